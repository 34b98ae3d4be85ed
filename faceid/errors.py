"""Every failure a user can cause is a FaceIDError with a one-line message.

Only the CLI turns these into stderr lines and exit codes, so library users get
ordinary exceptions they can catch by kind.
"""

from __future__ import annotations


class FaceIDError(Exception):
    """Base of all errors faceid reports to users; the message is one line."""

    exit_code: int = 1


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


class ModelError(FaceIDError):
    """No usable checkpoint: missing, corrupt, wrong format or digest mismatch."""


class UsageError(FaceIDError):
    """Arguments that contradict each other; the CLI maps this to exit code 2."""

    exit_code = 2
