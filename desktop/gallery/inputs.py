"""The images an edit starts from (init images and masks), kept in the gallery by content hash.

`<gallery>/.inputs/<sha256>.png`: the hash is of the pixels (mode, size and bytes), so the same
picture dropped twice is stored once, a record names its inputs exactly, and a rebuild from the
files keeps them (the scan skips dot folders). Written atomically, never changed, never removed
while the gallery is in use.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from desktop.errors import LatentStudioError
from desktop.gallery.files import save_png_atomic

INPUTS_DIR = ".inputs"


def pixel_hash(image) -> str:
    """sha256 of an image's pixels; the same for the same picture whatever file it came from."""
    digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def normalised(image, mask: bool = False):
    """Init images are RGB (transparency over white, as A1111 does); masks are 8-bit grey."""
    if mask:
        if "A" in image.getbands() and image.mode != "LA":  # a mask painted as transparency: alpha is the mask
            return image.getchannel("A")
        return image.convert("L")
    if "A" in image.getbands() or image.mode == "P":
        from PIL import Image

        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


class InputStore:
    def __init__(self, gallery_root: Path):
        self.folder = Path(gallery_root) / INPUTS_DIR

    def put(self, image) -> str:
        """Keep an (already normalised) image; returns its hash. Storing it again costs nothing."""
        digest = pixel_hash(image)
        if not self.path(digest).is_file():
            written = save_png_atomic(image, self.folder, digest)
            if written != self.path(digest):  # another process stored the same picture meanwhile
                written.unlink(missing_ok=True)
        return digest

    def path(self, digest: str) -> Path:
        return self.folder / f"{digest}.png"

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def get(self, digest: str):
        """The stored image, loaded; a missing or damaged input is an error that names it."""
        from PIL import Image

        path = self.path(digest)
        try:
            with Image.open(path) as opened:
                image = opened.copy()
        except FileNotFoundError:
            raise LatentStudioError(f"The edit's input image {digest[:12]} is no longer in the gallery "
                                    f"({path} is missing); choose the image again.") from None
        except OSError as exc:
            raise LatentStudioError(f"The edit's input image {path} cannot be read ({exc}).") from exc
        if pixel_hash(image) != digest:
            raise LatentStudioError(f"The edit's input image {path} was changed on disk; choose the image again.")
        return image
