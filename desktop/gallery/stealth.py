"""A1111 "stealth" metadata: the infotext hidden in the pixels' lowest bits.

Written by the stealth-pnginfo extension (also Forge and SD.Next) so the settings survive sites
that strip PNG text chunks. The bits run column by column (x outer, y inner): one per pixel in the
alpha channel, or three per pixel in red, green and blue. They spell a 15-byte signature
(`stealth_pnginfo`, `stealth_pngcomp`, `stealth_rgbinfo`, `stealth_rgbcomp`), a 32-bit length in
bits, then the text, gzip-compressed for the `comp` kinds. Every length is checked against the
pixels there are and the text limit, so a hostile image costs no more than its own decode.
"""

from __future__ import annotations

from pathlib import Path

from desktop.gallery.pngchunks import MAX_TEXT_BYTES, inflate

SIGNATURES = {b"stealth_pnginfo": ("alpha", False), b"stealth_pngcomp": ("alpha", True),
              b"stealth_rgbinfo": ("rgb", False), b"stealth_rgbcomp": ("rgb", True)}
MAX_PIXELS = 40_000_000  # larger images are not decoded just to look for hidden text


def read_stealth(path: Path, has_alpha: bool) -> str | None:
    """The hidden infotext, or None when the image carries none (or an unreadable one)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        if image.width * image.height > MAX_PIXELS:
            return None
        pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    columns = pixels.transpose(1, 0, 2)  # x outer, y inner, as the writer walks them
    sources = [("alpha", columns[..., 3])] if has_alpha else []
    sources.append(("rgb", columns[..., :3]))
    for mode, channel in sources:
        text = _decode((channel & 1).reshape(-1), mode)
        if text is not None:
            return text
    return None


def _decode(bits, mode: str) -> str | None:
    import numpy as np

    head = 15 * 8
    if bits.size < head + 32:
        return None
    kind = SIGNATURES.get(np.packbits(bits[:head]).tobytes())
    if kind is None or kind[0] != mode:
        return None
    length = int("".join(map(str, bits[head : head + 32].tolist())), 2)
    start = head + 32
    if length % 8 or length > bits.size - start or length > 8 * MAX_TEXT_BYTES:
        return None
    data = np.packbits(bits[start : start + length]).tobytes()
    try:
        return (inflate(data, wbits=31) if kind[1] else data).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
