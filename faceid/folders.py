"""Which files an enrollment takes from the paths a user gives, under which names, and why
every other file was left out.

The rules, chosen so that nothing is filed under a wrong name and nothing is left out
silently:

- A photo given by itself is enrolled under the name given (a name is required).
- A folder holding per-person folders gives each of them its folder's name; with a name
  given as well, that is refused unless everything should be one person (`one_person`).
- A folder of photos (no person folders) needs a name.
- A person's folder is read recursively (``Cara/2019/img.jpg`` is Cara's), following
  symbolic links, but never into a folder twice (no loops) and never the same file twice.
- Hidden files and folders (``.thumbnails``, ``.DS_Store``) are skipped, and reported.
- Files are judged by their content, not by their names: ``IMG_0001`` and ``A.JPG`` are
  photos, a text file called ``x.jpg`` is reported as not an image.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from faceid.errors import BadImage, BadName, UsageError
from faceid.imageio import image_format


@dataclass
class EnrollPlan:
    """(name, photo) pairs to enroll, and every file left out with its reason."""

    items: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def plan_enrollment(
    paths: list[str | os.PathLike], name: str | None = None, *, one_person: bool = False
) -> EnrollPlan:
    """Apply the module's rules to `paths`; UsageError when the request is ambiguous."""
    from faceid.gallery import new_name

    if one_person and name is None:
        raise UsageError("`one_person` needs the person's `name`", param=("one_person", "name"))
    if name is not None:
        name = new_name(name)
    plan = EnrollPlan()
    scan = _Scan(plan)
    for raw in paths:
        path = Path(raw)
        shown = os.fsdecode(path)
        if not path.is_dir():
            if name is None:
                raise UsageError(f"{shown}: give the person's `name`", param="name")
            plan.items.append((name, os.fspath(path)))
            continue
        try:
            entries = sorted(path.iterdir())
        except OSError as exc:
            raise BadImage(f"{shown}: cannot read folder ({exc.strerror})") from None
        before = len(plan.items)
        visible = [e for e in entries if not scan.hidden(e)]
        people = [e for e in visible if e.is_dir()]
        if name is not None:
            if people and not one_person:
                listed = ", ".join(p.name for p in people[:3]) + (
                    ", ..." if len(people) > 3 else ""
                )
                raise UsageError(
                    f"{shown} holds per-person folders ({listed}): leave out `name` to enroll "
                    f"each under its folder's name, or use `one_person` to enroll all of them "
                    f"as {name}",
                    param=("name", "one_person"),
                )
            scan.folder(path, name, top=True)
        else:
            flat = [e for e in visible if not e.is_dir()]
            if flat:
                raise UsageError(
                    f"{shown} holds photos directly ({flat[0].name}...): give their person's "
                    "`name`, or put them in per-person folders",
                    param="name",
                )
            for folder in people:
                try:
                    person = new_name(folder.name)
                except BadName as exc:
                    scan.skip(folder, f"folder name is not a usable person's name ({exc})")
                    continue
                scan.folder(folder, person)
        if len(plan.items) == before:
            why = f" ({len(plan.skipped)} file(s) skipped)" if plan.skipped else ""
            raise UsageError(f"{shown}: no photos found{why}")
    return plan


class _Scan:
    """One walk over the folders of a request, remembering what it has seen."""

    def __init__(self, plan: EnrollPlan) -> None:
        self.plan = plan
        self.seen_dirs: set[tuple[int, int]] = set()
        self.seen_files: dict[tuple[int, int], str] = {}

    def skip(self, path: Path, reason: str) -> None:
        self.plan.skipped.append({"source": os.fsdecode(path), "reason": reason})

    def hidden(self, path: Path) -> bool:
        if path.name.startswith("."):
            kind = "folder" if path.is_dir() else "file"
            self.skip(path, f"hidden {kind}")
            return True
        return False

    def folder(self, path: Path, name: str, *, top: bool = False) -> None:
        try:
            info = path.stat()
        except OSError as exc:
            self.skip(path, f"cannot read folder ({exc.strerror})")
            return
        key = (info.st_dev, info.st_ino)
        if key in self.seen_dirs:
            self.skip(path, "folder already read (a symbolic link loop or a second link)")
            return
        self.seen_dirs.add(key)
        try:
            entries = sorted(path.iterdir())
        except OSError as exc:
            self.skip(path, f"cannot read folder ({exc.strerror})")
            return
        for entry in entries:
            if not top and self.hidden(entry) or top and entry.name.startswith("."):
                continue
            if entry.is_dir():
                self.folder(entry, name)
            else:
                self.file(entry, name)

    def file(self, path: Path, name: str) -> None:
        try:
            info = path.stat()
        except FileNotFoundError:
            self.skip(path, "broken symbolic link")
            return
        except OSError as exc:
            self.skip(path, f"cannot read ({exc.strerror})")
            return
        if not stat.S_ISREG(info.st_mode):
            self.skip(path, "not a regular file")
            return
        if info.st_size == 0:
            self.skip(path, "empty file")
            return
        key = (info.st_dev, info.st_ino)
        if key in self.seen_files:
            self.skip(path, f"same file as {self.seen_files[key]}")
            return
        try:
            with open(path, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            self.skip(path, f"cannot read ({exc.strerror})")
            return
        if image_format(head) is None:
            self.skip(path, "not an image (judged by content)")
            return
        self.seen_files[key] = os.fsdecode(path)
        self.plan.items.append((name, os.fspath(path)))
