"""Reading a PNG's size and text chunks without decoding its pixels.

Rebuilding the index reads thousands of files; Pillow's `.text` decodes the whole image to reach
chunks after the pixel data, so this walks the chunk list and seeks over everything else.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_BYTES = 8 * 1024 * 1024  # a text chunk bigger than this is not metadata we want


class UnreadablePNG(ValueError):
    """Not a PNG, or cut short; the message says which."""


@dataclass
class PNGInfo:
    width: int
    height: int
    text: dict[str, str] = field(default_factory=dict)


def read_png_info(path: Path) -> PNGInfo:
    with open(path, "rb") as fh:
        if fh.read(8) != SIGNATURE:
            raise UnreadablePNG(f"{path.name} is not a PNG file")
        info: PNGInfo | None = None
        while True:
            header = fh.read(8)
            if len(header) < 8:
                raise UnreadablePNG(f"{path.name} is cut short (no end marker): an unfinished or damaged file")
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IEND":
                break
            if kind in (b"IHDR", b"tEXt", b"iTXt", b"zTXt") and length <= MAX_TEXT_BYTES:
                data = fh.read(length)
                if len(data) < length:
                    raise UnreadablePNG(f"{path.name} is cut short inside its {kind.decode()} chunk")
                fh.seek(4, 1)  # CRC
                if kind == b"IHDR":
                    width, height = struct.unpack(">II", data[:8])
                    info = PNGInfo(width, height)
                elif info is not None:
                    _add_text(info.text, kind, data)
            else:
                fh.seek(length + 4, 1)
        if info is None:
            raise UnreadablePNG(f"{path.name} has no image header")
        return info


def _add_text(text: dict[str, str], kind: bytes, data: bytes) -> None:
    """Decode one text chunk; a malformed one is skipped, never fatal."""
    try:
        key, _, rest = data.partition(b"\0")
        name = key.decode("latin-1")
        if kind == b"tEXt":
            value = rest.decode("latin-1")
        elif kind == b"zTXt":
            value = zlib.decompress(rest[1:]).decode("latin-1")
        else:  # iTXt: compression flag, method, language\0, translated keyword\0, text
            compressed, body = rest[0], rest[2:]
            _language, _, body = body.partition(b"\0")
            _translated, _, body = body.partition(b"\0")
            value = (zlib.decompress(body) if compressed else body).decode("utf-8")
        text.setdefault(name, value)
    except (ValueError, IndexError, zlib.error, UnicodeDecodeError):
        pass
