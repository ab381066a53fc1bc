"""The init image on the canvas, with a mask painted over it (white in the mask = repaint).

Left button paints (or erases, in erase mode), right button always erases; the mask is kept at the
image's own size, so what is painted is what the engine gets. Outpaint margins show as a frame
around the image.
"""

from __future__ import annotations

from PySide6.QtCore import QMargins, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from desktop.ui.qt_images import to_pil

OVERLAY = QColor(255, 40, 80)


class MaskCanvas(QWidget):
    mask_changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.image = QImage()  # the init image
        self.mask = QImage()  # Grayscale8, the image's size
        self.brush = 24  # pixels of the image
        self.erasing = False
        self.show_mask = True
        self.margins = (0, 0, 0, 0)  # outpaint: left, top, right, bottom
        self._last: QPointF | None = None
        self._stroke_erases = False
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 160)
        self.setMouseTracking(True)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def set_image(self, image: QImage) -> None:
        self.image = image
        self.mask = QImage(image.size(), QImage.Format.Format_Grayscale8)
        self.mask.fill(0)
        self.update()
        self.mask_changed.emit()

    def set_mask(self, mask: QImage) -> None:
        self.mask = mask.convertToFormat(QImage.Format.Format_Grayscale8).scaled(self.image.size())
        self.update()
        self.mask_changed.emit()

    def has_mask(self) -> bool:
        return not self.mask.isNull() and to_pil(self.mask).getbbox() is not None

    def clear(self) -> None:
        self.mask.fill(0)
        self.update()
        self.mask_changed.emit()

    def invert(self) -> None:
        self.mask.invertPixels()
        self.update()
        self.mask_changed.emit()

    def image_rect(self) -> QRectF:
        """Where the image (with its outpaint margins) is drawn, fitted to the widget."""
        left, top, right, bottom = self.margins
        full = self.image.size().grownBy(QMargins(left, top, right, bottom))
        size = full.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        scale = size.width() / max(1, full.width())
        x0 = (self.width() - size.width()) / 2 + left * scale
        y0 = (self.height() - size.height()) / 2 + top * scale
        return QRectF(x0, y0, self.image.width() * scale, self.image.height() * scale)

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(30, 30, 34))
        if self.image.isNull():
            return
        target = self.image_rect()
        if any(self.margins):
            scale = target.width() / self.image.width()
            left, top, right, bottom = self.margins
            frame = target.adjusted(-left * scale, -top * scale, right * scale, bottom * scale)
            painter.fillRect(frame, QColor(60, 60, 70))
            painter.setPen(QPen(QColor(200, 200, 210), 1, Qt.PenStyle.DashLine))
            painter.drawRect(frame)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(target, self.image)
        if self.show_mask and not self.mask.isNull():
            overlay = QImage(self.mask.size(), QImage.Format.Format_ARGB32)
            overlay.fill(OVERLAY)
            overlay.setAlphaChannel(self.mask)  # the mask's grey is the overlay's opacity
            painter.setOpacity(0.55)
            painter.drawImage(target, overlay)

    # --- painting ------------------------------------------------------------------------------

    def mousePressEvent(self, event) -> None:
        if self.image.isNull():
            return
        self._stroke_erases = self.erasing or event.button() == Qt.MouseButton.RightButton
        self._last = self._to_image(event.position())
        self._dab(self._last, self._last)

    def mouseMoveEvent(self, event) -> None:
        if self._last is None:
            return
        point = self._to_image(event.position())
        self._dab(self._last, point)
        self._last = point

    def mouseReleaseEvent(self, _event) -> None:
        if self._last is not None:
            self._last = None
            self.mask_changed.emit()

    def paint_stroke(self, points: list[tuple[float, float]], erase: bool = False) -> None:
        """Paint through image coordinates (what a mouse stroke does; also for scripts and tests)."""
        self._stroke_erases = erase
        previous = QPointF(*points[0])
        for x, y in points:
            self._dab(previous, QPointF(x, y))
            previous = QPointF(x, y)
        self.mask_changed.emit()

    def _dab(self, start: QPointF, end: QPointF) -> None:
        painter = QPainter(self.mask)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        colour = QColor(0, 0, 0) if self._stroke_erases else QColor(255, 255, 255)
        painter.setPen(QPen(colour, self.brush, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                            Qt.PenJoinStyle.RoundJoin))
        painter.drawLine(start, end)
        painter.end()
        self.update()

    def _to_image(self, position: QPointF) -> QPointF:
        target = self.image_rect()
        scale = self.image.width() / max(1.0, target.width())
        return QPointF((position.x() - target.x()) * scale, (position.y() - target.y()) * scale)
