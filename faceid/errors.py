"""Every failure a user can cause is a FaceIDError with a one-line message.

Only the CLI turns these into stderr lines and exit codes, so library users get
ordinary exceptions they can catch by kind.
"""

from __future__ import annotations


class FaceIDError(Exception):
    """Base of all errors faceid reports to users; the message is one line.

    Messages name the API's parameters in backquotes (`top_k`); `params` lists them, so
    the command line can say ``--top-k`` instead without the library knowing about flags.
    """

    exit_code: int = 1

    def __init__(self, message: str = "", *, param: str | tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.params: tuple[str, ...] = (param,) if isinstance(param, str) else tuple(param or ())

    def __reduce__(self):  # keep `params` when a worker process sends the error back
        return (_rebuild, (type(self), str(self), self.params))


def _rebuild(kind: type, message: str, params: tuple[str, ...]) -> FaceIDError:
    return kind(message, param=params)


class BadImage(FaceIDError):
    """The file is missing, unreadable, not an image, truncated or too large."""


class NoFace(FaceIDError):
    """No face was found where exactly one was needed."""


class ManyFaces(FaceIDError):
    """Several faces were found where exactly one was needed."""


class BadName(FaceIDError):
    """A person's name that cannot be stored (empty, control characters, too long...)."""


class NotEnrolled(FaceIDError):
    """The named person is not in the gallery."""


class GalleryError(FaceIDError):
    """The gallery on disk is missing pieces, corrupt, or was made by another model."""


class Duplicate(FaceIDError):
    """The face is already enrolled, or identify would already name it as someone else."""


class NoGallery(GalleryError):
    """A verb that reads a gallery was pointed at a path that holds none (a typo, another
    folder): said plainly instead of answering as if nobody were enrolled."""


class ModelError(FaceIDError):
    """No usable checkpoint: missing, corrupt, wrong format or digest mismatch."""


class UsageError(FaceIDError):
    """Arguments that are out of range or contradict each other; the CLI exits 2."""

    exit_code = 2
