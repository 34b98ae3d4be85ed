"""One-line messages: what the gallery tells users about damage and about FAISS failures."""

from __future__ import annotations

import re

# Said to library users and command-line users alike, so it names both ways to repair.
REPAIR_HINT = "repair it: `faceid doctor --repair`, or FaceID.doctor(repair=True)"

# FAISS prefixes its messages with where in its C++ source they were raised, and failed
# assertions with the assertion's text: "Error in <function> at <file>:<line>: Error: '<expr>'
# failed: <message>". Users need the message.
_FAISS_WHERE = re.compile(r"^Error in .*? at \S+:\d+: (?:Error: '.*?' failed: )?")


def _one_line(exc: BaseException | str) -> str:
    """FAISS errors are multi-line C++ traces; our messages must be one line, and say what
    went wrong rather than where in FAISS."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return (_FAISS_WHERE.sub("", first) or first)[:300]
