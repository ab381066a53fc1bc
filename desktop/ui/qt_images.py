"""PIL images to QImages and back: the one conversion the window uses (each result owns its pixels, so it is
safe to send to another thread)."""

from __future__ import annotations

from PySide6.QtGui import QImage


def to_pil(image: QImage):
    """A QImage as a PIL image: Grayscale8 as L, anything else as RGB."""
    from PIL import Image

    grey = image.format() == QImage.Format.Format_Grayscale8
    image = image if grey else image.convertToFormat(QImage.Format.Format_RGB888)
    mode = "L" if grey else "RGB"
    return Image.frombuffer(mode, (image.width(), image.height()), bytes(image.constBits()), "raw", mode,
                            image.bytesPerLine(), 1).copy()


def from_pil(image) -> QImage:
    """A PIL image as a QImage (L stays grey; everything else becomes RGB)."""
    grey = image.mode == "L"
    image = image if grey else image.convert("RGB")
    data = image.tobytes()
    fmt = QImage.Format.Format_Grayscale8 if grey else QImage.Format.Format_RGB888
    return QImage(data, image.width, image.height, image.width * (1 if grey else 3), fmt).copy()
