"""Writing image files so that a crash never leaves a partial PNG under a final name."""

from __future__ import annotations

import errno
import os
import tempfile
from datetime import datetime
from pathlib import Path

from desktop.errors import LatentStudioError


def dated_folder(root: Path, when: datetime | None = None) -> Path:
    when = when or datetime.now()
    return root / f"{when:%Y}" / f"{when:%m}" / f"{when:%d}"


def write_image(image, folder: Path, request, model: dict, strip_metadata: bool, created: float,
                networks: tuple[dict, ...] = (), grid: dict | None = None) -> Path:
    """One generated image as `<time>-<seed>.png` with its metadata (none when privacy asks)."""
    from desktop.gallery.metadata import text_chunks

    chunks = None if strip_metadata else text_chunks(request, model, created=created, networks=networks, grid=grid)
    return save_png_atomic(image, folder, f"{datetime.fromtimestamp(created):%Y%m%d-%H%M%S}-{request.seed}", chunks)


def save_png_atomic(image, folder: Path, stem: str, chunks: dict[str, str] | None = None) -> Path:
    """Save as `<stem>.png` (or `<stem>-2.png`, ... if taken): temp file, fsync, then an exclusive rename."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (chunks or {}).items():
        info.add_itxt(key, value)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".partial-", suffix=".png")
    except OSError as exc:
        raise LatentStudioError(f"Cannot write images to {folder}: {why(exc)}. Nothing was saved.") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format="PNG", pnginfo=info)
            fh.flush()
            os.fsync(fh.fileno())
        return _claim_name(Path(tmp), folder, stem)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise LatentStudioError(f"Could not save the image in {folder}: {why(exc)}. Nothing was saved.") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def why(exc: OSError) -> str:
    """An OS error in words a person can act on."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full (free some space and try again)"
    if exc.errno == errno.EFBIG:
        return "the file would be larger than this system allows (a quota or file size limit)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "the folder is read-only (choose another gallery folder in Settings)"
    return exc.strerror or str(exc)


def _claim_name(tmp: Path, folder: Path, stem: str) -> Path:
    """Hard-link the finished temp file to the first free name: atomic and never overwrites."""
    for n in range(1, 10_000):
        target = folder / (f"{stem}.png" if n == 1 else f"{stem}-{n}.png")
        try:
            os.link(tmp, target)
        except FileExistsError:
            continue
        except OSError:  # filesystems without hard links: fall back to an exclusive create + rename
            if target.exists():
                continue
            os.replace(tmp, target)
            return target
        tmp.unlink()
        return target
    raise LatentStudioError(f"No free file name for {stem} in {folder}.")
