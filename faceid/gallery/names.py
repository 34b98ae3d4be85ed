"""People's names: the one canonical form every backend stores, and how names are quoted in
messages."""

from __future__ import annotations

import unicodedata

from faceid.errors import BadName

MAX_NAME_LENGTH = 200

JOINERS = frozenset("\u200c\u200d")

# The words faceid prints for "no one": a person called so would be indistinguishable from
# a stranger in identify's output (and its exit code would lie).
RESERVED_NAMES = frozenset({"unknown"})


def validate_name(name: str) -> str:
    """Return the canonical form of a person's name, or raise BadName.

    NFC normalisation makes "Zoë" typed with a combining diaeresis the same person as the
    precomposed one. Control/format characters, path separators and absurd lengths are refused
    because names end up in terminals, file names and one-line error messages.
    """
    if not isinstance(name, str):
        raise BadName(f"a name must be text, not {type(name).__name__}")
    clean = unicodedata.normalize("NFC", name).strip()
    if not clean:
        raise BadName("a name cannot be empty or only spaces")
    if len(clean) > MAX_NAME_LENGTH:
        raise BadName(f"name is {len(clean)} characters long; the limit is {MAX_NAME_LENGTH}")
    for ch in clean:
        # ZWNJ/ZWJ are format characters that Persian, Indic scripts and emoji need.
        if unicodedata.category(ch).startswith("C") and ch not in JOINERS:
            raise BadName(f"name {_short(clean)} contains the control character U+{ord(ch):04X}")
        if ch in "/\\":
            raise BadName(f"name {_short(clean)} contains {ch!r}; slashes are not allowed")
    return clean


def new_name(name: str) -> str:
    """validate_name for a name about to be stored: also refuses the reserved words.

    Kept apart from validate_name so that galleries written before a word was reserved
    still open.
    """
    clean = validate_name(name)
    if clean.casefold() in RESERVED_NAMES:
        raise BadName(
            f"{_short(clean)} is what faceid answers for a face it does not know: "
            "choose another name"
        )
    return clean


def _short(text: str, limit: int = 60) -> str:
    """repr() keeps user text on one line; truncation keeps messages readable."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text)
