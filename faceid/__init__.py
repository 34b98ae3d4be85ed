"""faceid: face verification and recognition you can measure.

The public API is the FaceID class (enroll / verify / identify / embed) and the
errors it raises. Heavy libraries load lazily, so importing faceid is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faceid.errors import (
    BadImage,
    BadName,
    Duplicate,
    FaceIDError,
    GalleryError,
    ManyFaces,
    ModelError,
    NoFace,
    NoGallery,
    NotEnrolled,
    UsageError,
)

if TYPE_CHECKING:
    from faceid.api import FaceID

__all__ = [
    "FaceID",
    "FaceIDError",
    "BadImage",
    "BadName",
    "Duplicate",
    "GalleryError",
    "ManyFaces",
    "ModelError",
    "NoFace",
    "NoGallery",
    "NotEnrolled",
    "UsageError",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "FaceID":
        from faceid.api import FaceID

        return FaceID
    raise AttributeError(name)
