"""API keys: who may call the service, stored as SHA-256 digests, never in the clear.

A key is 32 random bytes (URL-safe text) shown once by `faceid keys add`; the file keeps only
its digest, its name and its role. Random keys of that length cannot be guessed from a digest,
so a plain SHA-256 (no slow password hash) is the right tool, and each request costs one hash.
The service re-reads the file when it changes, so a key added or removed while it runs counts
from the next request.

Roles: ``read`` may verify, identify, embed and list; ``write`` may also enroll, rename and
remove.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from faceid.atomic import atomic_open
from faceid.errors import FaceIDError, UsageError

ROLES = ("read", "write")
KEY_PREFIX = "fid_"


def default_keys_path() -> Path:
    """$FACEID_KEYS, else keys.json in the user's faceid config folder."""
    if os.environ.get("FACEID_KEYS"):
        return Path(os.environ["FACEID_KEYS"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "faceid" / "keys.json"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Key:
    name: str
    role: str
    sha256: str
    created: str


class KeyStore:
    """The keys file: add, remove, list, and check a presented key's role."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._stamp: tuple | None = None
        self._keys: list[Key] = []

    def _load(self) -> list[Key]:
        """Re-read the file when its size or mtime changed; a missing file holds no keys."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._keys = None, []
            return self._keys
        except OSError as exc:
            raise FaceIDError(f"cannot read keys file {self.path}: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                keys = [Key(**k) for k in data["keys"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise FaceIDError(
                    f"keys file {self.path} is unreadable or corrupt ({exc})"
                ) from None
            self._stamp, self._keys = stamp, keys
        return self._keys

    def keys(self) -> list[Key]:
        return list(self._load())

    def __bool__(self) -> bool:
        return bool(self._load())

    def _save(self, keys: list[Key]) -> None:
        data = {"keys": [k.__dict__ for k in keys]}
        with atomic_open(self.path, "w") as fh:
            json.dump(data, fh, indent=1)
        os.chmod(self.path, 0o600)
        self._stamp = None

    def add(self, name: str, role: str) -> str:
        """Create a key; returns it in the clear (the only time it exists outside the caller)."""
        import filelock

        if role not in ROLES:
            raise UsageError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if not name.strip() or any(not ch.isprintable() for ch in name):
            raise UsageError("a key's name must be printable text")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(str(self.path) + ".lock", timeout=30):
            self._stamp = None
            keys = self._load()
            if any(k.name == name for k in keys):
                raise UsageError(f"a key named {name!r} exists; remove it first")
            key = KEY_PREFIX + secrets.token_urlsafe(32)
            created = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self._save([*keys, Key(name, role, _digest(key), created)])
        return key

    def remove(self, name: str) -> None:
        import filelock

        with filelock.FileLock(str(self.path) + ".lock", timeout=30):
            self._stamp = None
            keys = self._load()
            if not any(k.name == name for k in keys):
                raise UsageError(f"no key named {name!r} in {self.path}")
            self._save([k for k in keys if k.name != name])

    def role_of(self, presented: str | None) -> str | None:
        """The role of a presented key, or None when it is not one of ours."""
        if not presented:
            return None
        digest = _digest(presented)
        found = None
        for k in self._load():  # compare with every key in constant time per key
            if hmac.compare_digest(k.sha256, digest):
                found = k.role
        return found
