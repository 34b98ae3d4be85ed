"""Where faceid keeps things by default, independent of the folder it is run from.

Kept free of heavy imports: `faceid --help` shows these paths and must start instantly.
"""

from __future__ import annotations

import os
from pathlib import Path


def user_gallery_path() -> Path:
    """ "galleries/default" in the user's data folder (on Linux
    ~/.local/share/faceid/galleries/default, following XDG_DATA_HOME)."""
    from platformdirs import user_data_path

    return user_data_path("faceid") / "galleries" / "default"


def default_gallery_path() -> Path:
    """FACEID_GALLERY if set, else user_gallery_path(), so that `faceid identify` finds the
    same gallery whatever the current folder is."""
    env = os.environ.get("FACEID_GALLERY")
    return Path(env) if env else user_gallery_path()
