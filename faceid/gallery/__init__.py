"""Galleries of enrolled people: one small protocol (``base``), two backends.

- ``store.Gallery``: a FAISS index in a folder with a JSON manifest, atomic commits and a file
  lock (the default, for one machine); ``doctor`` checks and repairs it.
- ``postgres.PostgresGallery``: PostgreSQL with pgvector, selected by a ``postgresql://`` URL,
  for galleries shared by several machines.

The parts each have one job: ``names`` (canonical names), ``manifest`` and ``layout`` (the
folder's files), ``vectors`` (raw embeddings), ``faiss_index`` (building, tuning and searching
FAISS indexes), ``faiss_gpu`` (searching on a GPU when there is one).
"""

from faceid.gallery.base import GalleryBackend, Match
from faceid.gallery.faiss_index import (
    DEFAULT_APPROX_FACTORY,
    auto_index_params,
    inner_index,
    make_index,
    search_people,
    training_size,
    tune_index,
)
from faceid.gallery.manifest import FORMAT_VERSION
from faceid.gallery.names import RESERVED_NAMES, new_name, validate_name
from faceid.gallery.store import Gallery

__all__ = [
    "DEFAULT_APPROX_FACTORY",
    "FORMAT_VERSION",
    "Gallery",
    "GalleryBackend",
    "Match",
    "auto_index_params",
    "inner_index",
    "make_index",
    "search_people",
    "training_size",
    "tune_index",
    "validate_name",
    "new_name",
    "RESERVED_NAMES",
]
