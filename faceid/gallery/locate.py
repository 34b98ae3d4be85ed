"""Which backend a gallery location names: a ``postgresql://`` URL or a folder.

The only place that tells them apart, so the API, the CLI and tools take either.
"""

from __future__ import annotations

import os
from typing import Any

from faceid.gallery.base import GalleryBackend
from faceid.locations import gallery_location, is_url

Location = str | os.PathLike

__all__ = ["Location", "gallery_location", "inspect", "is_url", "open_for_doctor", "open_gallery"]


def open_gallery(location: Location, **options: Any) -> GalleryBackend:
    """The gallery at ``location``, with the folder gallery's constructor options
    (model_id, dim, index_factory, auto_switch, approx_factory, index_params, search_device)."""
    if is_url(location):
        from faceid.gallery.postgres import PostgresGallery

        return PostgresGallery(str(location), **options)
    from faceid.gallery.store import Gallery

    return Gallery(location, **options)


def open_for_doctor(location: Location) -> GalleryBackend:
    """The gallery at ``location`` opened for check()/repair() without a model."""
    if is_url(location):
        from faceid.gallery.postgres import PostgresGallery

        return PostgresGallery.open_for_doctor(str(location))
    from faceid.gallery.store import Gallery

    return Gallery.open_for_doctor(location)


def inspect(location: Location) -> dict:
    """Describe a gallery (model, index, people) without a model loaded."""
    if is_url(location):
        from faceid.gallery.postgres import PostgresGallery

        return PostgresGallery.inspect(str(location))
    from faceid.gallery.store import Gallery

    return Gallery.inspect(location)
