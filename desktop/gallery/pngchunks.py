"""Reading a PNG's size and text chunks without decoding its pixels, with every read bounded.

Rebuilding the index reads thousands of files; Pillow's `.text` decodes the whole image to reach
chunks after the pixel data, so this walks the chunk list and seeks over everything else. Hostile
files cannot tie it up: a text chunk larger than MAX_CHUNK_BYTES is skipped unread, and a
compressed one is inflated as a stream that stops at MAX_TEXT_BYTES (a 1 MB zTXt that would
inflate to 1 GB costs a few MB of memory and milliseconds). What was skipped is named in
`oversized`, so the image stays listed with a note.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CHUNK_BYTES = 4 * 1024 * 1024  # a text chunk bigger than this on disk is not metadata we want
MAX_TEXT_BYTES = 4 * 1024 * 1024  # nor one that inflates past this
TEXT_KINDS = (b"tEXt", b"iTXt", b"zTXt")


class UnreadablePNG(ValueError):
    """Not a PNG, or cut short; the message says which."""


class OversizedText(ValueError):
    """Text that would inflate past the limit: unreadable metadata, not an unreadable image."""


@dataclass
class PNGInfo:
    width: int
    height: int
    has_alpha: bool = False
    text: dict[str, str] = field(default_factory=dict)
    oversized: list[str] = field(default_factory=list)  # keywords of text chunks skipped for their size


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
            if kind == b"IHDR" or (kind in TEXT_KINDS and length <= MAX_CHUNK_BYTES):
                data = fh.read(length)
                if len(data) < length:
                    raise UnreadablePNG(f"{path.name} is cut short inside its {kind.decode()} chunk")
                fh.seek(4, 1)  # CRC
                if kind == b"IHDR":
                    width, height, _depth, colour = struct.unpack(">IIBB", data[:10])
                    info = PNGInfo(width, height, has_alpha=colour in (4, 6))
                elif info is not None:
                    _add_text(info, kind, data)
            else:
                if kind in TEXT_KINDS and info is not None:
                    info.oversized.append(_keyword(fh, length))
                fh.seek(length + 4, 1)
        if info is None:
            raise UnreadablePNG(f"{path.name} has no image header")
        return info


def _keyword(fh, length: int) -> str:
    """The name of a chunk too big to read, from its first bytes (the file position is kept)."""
    start = fh.tell()
    head = fh.read(min(length, 80))
    fh.seek(start)
    return head.partition(b"\0")[0].decode("latin-1", "replace") or "?"


def inflate(data: bytes, limit: int = MAX_TEXT_BYTES, wbits: int = zlib.MAX_WBITS) -> bytes:
    """zlib (or, with wbits 31, gzip) data inflated as a stream; ValueError past `limit` bytes."""
    stream = zlib.decompressobj(wbits)
    out = stream.decompress(data, limit + 1)
    if len(out) > limit or stream.unconsumed_tail:
        raise OversizedText(f"inflates past {limit // 2**20} MB")
    return out


def _add_text(info: PNGInfo, kind: bytes, data: bytes) -> None:
    """Decode one text chunk; a malformed one is skipped, never fatal."""
    key, _, rest = data.partition(b"\0")
    name = key.decode("latin-1", "replace")
    try:
        if kind == b"tEXt":
            value = rest.decode("latin-1")
        elif kind == b"zTXt":
            value = inflate(rest[1:]).decode("latin-1")
        else:  # iTXt: compression flag, method, language\0, translated keyword\0, text
            compressed, body = rest[0], rest[2:]
            _language, _, body = body.partition(b"\0")
            _translated, _, body = body.partition(b"\0")
            value = (inflate(body) if compressed else body).decode("utf-8")
    except OversizedText:
        info.oversized.append(name)
        return
    except (ValueError, IndexError, zlib.error, UnicodeDecodeError):
        return
    info.text.setdefault(name, value)
