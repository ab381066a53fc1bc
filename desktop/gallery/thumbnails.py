"""256 px thumbnails, cached on disk and keyed by the file's path, size and modification time.

A changed or replaced image gets a new key, so a stale thumbnail is never shown; a missing one is
made again. Safe to call from worker threads (each write is a temp file and a rename).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

THUMBNAIL_SIZE = 256


def thumbnails_dir() -> Path:
    from desktop import paths

    return paths.cache_dir() / "thumbnails"


def thumbnail_key(image: Path) -> str:
    stat = image.stat()
    raw = f"{image.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{THUMBNAIL_SIZE}"
    return hashlib.sha1(raw.encode("utf-8", "surrogateescape")).hexdigest()


def thumbnail(image: Path, cache: Path | None = None) -> Path:
    """The cached thumbnail's path, made first when missing or stale. Raises OSError for unreadable images."""
    from PIL import Image

    key = thumbnail_key(image)
    target = (cache or thumbnails_dir()) / key[:2] / f"{key}.png"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(image) as source:
        source.draft("RGB", (THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        small = source.convert("RGBA" if "A" in source.getbands() else "RGB")
        small.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".thumb-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as fh:
            small.save(fh, format="PNG", compress_level=1)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
