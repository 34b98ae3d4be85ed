"""LFW protocol files and identification splits, read strictly.

A protocol file that parses "mostly" would silently change which pairs a figure
is measured on, so any line that does not fit the format is a ValueError naming
the file and line, and counts announced in headers are checked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from faceid.imageio import is_image_path

__all__ = [
    "Pair",
    "pair_people",
    "read_pairs",
    "read_people",
    "scan_identities",
    "IdentifySplit",
    "identify_split",
    "DEV_FOLDS",
]

DEV_FOLDS = 10
"""Folds assigned to View 1 files (pairsDevTrain/pairsDevTest), which define none."""


@dataclass(frozen=True)
class Pair:
    """Two photos, whether they show the same person, and the protocol fold."""

    path_a: Path
    path_b: Path
    same: bool
    fold: int


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, whitespace-split fields) of every non-blank line."""
    text = path.read_text(encoding="utf-8")
    return [(no, line.split()) for no, line in enumerate(text.splitlines(), 1) if line.strip()]


def _int(token: str, path: Path, no: int, what: str, minimum: int = 0) -> int:
    try:
        value = int(token)
    except ValueError:
        raise ValueError(f"{path}:{no}: {what} must be an integer, got {token!r}") from None
    if value < minimum:
        raise ValueError(f"{path}:{no}: {what} must be >= {minimum}, got {value}")
    return value


def _image(root: Path, name: str, index: int, ext: str) -> Path:
    return root / name / f"{name}_{index:04d}{ext}"


def read_pairs(pairs_file: str | Path, root: str | Path, *, ext: str = ".jpg") -> list[Pair]:
    """Read a pairs file, LFW's or the plain format, into Pairs, in file order.

    The plain format is one pair per line, ``path_a<TAB>path_b<TAB>1`` (same person) or
    ``0`` (different people); relative paths are under ``root``; blank lines and lines
    starting with ``#`` are ignored. A file whose first line is not an LFW header (one
    or two integers) is read as plain.

    Two header forms exist:

    * ``"10 300"`` (pairs.txt, View 2): 10 folds, each 300 same-person lines then
      300 different-people lines; a pair's fold is its block.
    * ``"1100"`` / ``"500"`` (pairsDevTrain/pairsDevTest, View 1): N same lines then
      N different lines and no folds. Folds 0..9 (``DEV_FOLDS``) are assigned
      contiguously *within each class*: the first tenth of the same pairs and the
      first tenth of the different pairs form fold 0, and so on. Numbering the file
      contiguously instead would give folds holding only one class, whose per-fold
      accuracy is TAR or TNR rather than accuracy; this way every fold is balanced
      like pairs.txt's. (With N < 10, N folds are used.)

    A 3-field line ``name i j`` is a same pair, a 4-field line ``name1 i name2 j`` a
    different pair; photo i of name is ``root/name/name_%04d<ext>``. The files'
    block structure is enforced: a line of the wrong kind for its position, a wrong
    line count, a bad index or a malformed header is a ValueError with file:line.
    Paths are not checked for existence here.
    """
    path = Path(pairs_file)
    root = Path(root)
    lines = _lines(path)
    if not lines:
        raise ValueError(f"{path}: empty pairs file")
    head_no, head = lines[0]
    if not (1 <= len(head) <= 2 and all(t.isdigit() for t in head)):
        return _read_plain_pairs(path, root)
    if len(head) == 2:
        n_folds = _int(head[0], path, head_no, "number of folds", 1)
        per_class = _int(head[1], path, head_no, "pairs per class", 1)
    elif len(head) == 1:
        n_folds = 1
        per_class = _int(head[0], path, head_no, "pairs per class", 1)
    else:
        raise ValueError(
            f"{path}:{head_no}: header must be 'N' or 'FOLDS N', got {' '.join(head)!r}"
        )
    body = lines[1:]
    expected = 2 * n_folds * per_class
    if len(body) != expected:
        last = body[-1][0] if body else head_no
        raise ValueError(
            f"{path}:{last}: header announces {expected} pair lines, file has {len(body)}"
        )
    dev_folds = min(DEV_FOLDS, per_class)
    pairs: list[Pair] = []
    for k, (no, fields) in enumerate(body):
        block, offset = divmod(k, 2 * per_class)
        want_same = offset < per_class
        if len(fields) == 3:
            name, i, j = fields
            a = _image(root, name, _int(i, path, no, "image number", 1), ext)
            b = _image(root, name, _int(j, path, no, "image number", 1), ext)
            same = True
        elif len(fields) == 4:
            name_a, i, name_b, j = fields
            a = _image(root, name_a, _int(i, path, no, "image number", 1), ext)
            b = _image(root, name_b, _int(j, path, no, "image number", 1), ext)
            same = False
        else:
            raise ValueError(
                f"{path}:{no}: expected 3 fields (same) or 4 fields (different), got {len(fields)}"
            )
        if same != want_same:
            kind = "same-person (3 fields)" if want_same else "different-people (4 fields)"
            raise ValueError(f"{path}:{no}: expected a {kind} line at this position")
        if n_folds > 1:
            fold = block
        else:
            fold = (offset % per_class) * dev_folds // per_class
        pairs.append(Pair(a, b, same, fold))
    return pairs


def _read_plain_pairs(path: Path, root: Path) -> list[Pair]:
    """``path_a<TAB>path_b<TAB>1|0`` lines; folds assigned within each class, as for View 1."""
    rows: list[tuple[Path, Path, bool]] = []
    text = path.read_text(encoding="utf-8")
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 3 or fields[2].strip() not in ("0", "1"):
            raise ValueError(
                f"{path}:{no}: expected 'path_a<TAB>path_b<TAB>1' (same person) or '...<TAB>0' "
                "(different people), or an LFW pairs file"
            )
        a, b = (root / f.strip() for f in fields[:2])
        rows.append((a, b, fields[2].strip() == "1"))
    if not rows:
        raise ValueError(f"{path}: no pairs in the file")
    totals = {label: sum(r[2] is label for r in rows) for label in (True, False)}
    seen = {True: 0, False: 0}
    pairs = []
    for a, b, same in rows:
        folds = min(DEV_FOLDS, totals[same])
        pairs.append(Pair(a, b, same, seen[same] * folds // totals[same]))
        seen[same] += 1
    return pairs


def pair_people(pairs: list[Pair], root: str | Path) -> set[str]:
    """The people a pairs file names: the folder each photo sits in under ``root`` (LFW's
    layout, root/name/name_0001.jpg), for checking it against a held-out people list."""
    root = Path(root)
    people = set()
    for pair in pairs:
        for photo in (pair.path_a, pair.path_b):
            try:
                people.add(photo.relative_to(root).parts[0])
            except (ValueError, IndexError):
                people.add(photo.parent.name)
    return people


def read_people(people_file: str | Path) -> list[tuple[str, int]]:
    """Read a people file into (name, number of images), in file order.

    peopleDevTrain/peopleDevTest: a count line, then ``name<TAB>n`` lines.
    people.txt: a fold-count line, then per fold a count line and its names; the
    folds are flattened (they only matter for View 2 training, which this project
    does not do). Announced counts are checked.
    """
    path = Path(people_file)
    lines = _lines(path)
    if not lines:
        raise ValueError(f"{path}: empty people file")
    head_no, head = lines[0]
    if len(head) != 1:
        raise ValueError(f"{path}:{head_no}: header must be a single count")
    first = _int(head[0], path, head_no, "count")
    rest = lines[1:]
    folded = bool(rest) and len(rest[0][1]) == 1
    people: list[tuple[str, int]] = []
    if folded:
        pos = 0
        for _ in range(first):
            if pos >= len(rest):
                raise ValueError(f"{path}:{head_no}: header announces {first} folds, file ends")
            no, fields = rest[pos]
            if len(fields) != 1:
                raise ValueError(f"{path}:{no}: expected a fold's count line")
            count = _int(fields[0], path, no, "count")
            names = rest[pos + 1 : pos + 1 + count]
            if len(names) < count:
                raise ValueError(f"{path}:{no}: count {count} runs past the end of the file")
            people.extend(_people_lines(path, names))
            pos += 1 + count
        if pos != len(rest):
            raise ValueError(f"{path}:{rest[pos][0]}: lines after the last announced fold")
    else:
        if len(rest) != first:
            last = rest[-1][0] if rest else head_no
            raise ValueError(
                f"{path}:{last}: header announces {first} people, file has {len(rest)}"
            )
        people.extend(_people_lines(path, rest))
    return people


def _people_lines(path: Path, lines: list[tuple[int, list[str]]]) -> list[tuple[str, int]]:
    out = []
    for no, fields in lines:
        if len(fields) != 2:
            raise ValueError(f"{path}:{no}: expected 'name<TAB>n_images', got {len(fields)} fields")
        out.append((fields[0], _int(fields[1], path, no, "number of images", 1)))
    return out


def scan_identities(root: str | Path) -> dict[str, list[Path]]:
    """Map each person folder under root to its image files, both sorted.

    Only files with an image suffix (any case) count, so stray notes or thumbnails'
    metadata do not become probes; folders without images and hidden entries are
    skipped. Sorting makes "first image" and seeded splits reproducible across
    filesystems.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a directory")
    out: dict[str, list[Path]] = {}
    for person in sorted(root.iterdir()):
        if not person.is_dir() or person.name.startswith("."):
            continue
        images = sorted(
            p
            for p in person.iterdir()
            if p.is_file() and not p.name.startswith(".") and is_image_path(p)
        )
        if images:
            out[person.name] = images
    return out


@dataclass
class IdentifySplit:
    """Who is enrolled (gallery) and who is searched for (probes), by image."""

    gallery: list[tuple[str, Path]] = field(default_factory=list)
    genuine_probes: list[tuple[str, Path]] = field(default_factory=list)
    impostor_probes: list[tuple[str, Path]] = field(default_factory=list)


def identify_split(
    identities: dict[str, list[Path]],
    *,
    shots: int = 1,
    distractor_share: float = 0.5,
    seed: int = 0,
) -> IdentifySplit:
    """Split identities into a gallery plus genuine and impostor probes.

    People with at least ``shots + 1`` images enrol their first ``shots`` images and
    the rest become genuine probes (closed-set CMC and DIR). People with fewer
    images cannot be both enrolled and probed; a seeded ``distractor_share`` of them
    enrol their first image as distractors (making the gallery as crowded as a real
    one), and every image of the others becomes an impostor probe, a person not
    enrolled who should be rejected (open-set false alarms). Names are processed in
    sorted order and the draw uses its own ``random.Random(seed)``, so a split is
    the same on every machine and independent of global random state.
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    if not 0.0 <= distractor_share <= 1.0:
        raise ValueError(f"distractor_share must be within [0, 1], got {distractor_share}")
    split = IdentifySplit()
    few: list[str] = []
    for name in sorted(identities):
        images = list(identities[name])
        if len(images) >= shots + 1:
            split.gallery.extend((name, p) for p in images[:shots])
            split.genuine_probes.extend((name, p) for p in images[shots:])
        elif images:
            few.append(name)
    n_distractors = round(distractor_share * len(few))
    distractors = set(random.Random(seed).sample(few, n_distractors))
    for name in few:
        images = list(identities[name])
        if name in distractors:
            split.gallery.append((name, images[0]))
        else:
            split.impostor_probes.extend((name, p) for p in images)
    split.gallery.sort(key=lambda item: item[0])  # stable: keeps each person's image order
    return split
