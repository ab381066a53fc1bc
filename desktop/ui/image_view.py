"""An image that fits its space (or shows at 100 %), used for the live preview and the detail view."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget


class ImageView(QWidget):
    """Paints a pixmap scaled to fit (smooth), or at 100 % when `fit` is off; a message when empty."""

    def __init__(self, message: str = "", parent=None):
        super().__init__(parent)
        self._pixmap = QPixmap()
        self.message = message
        self.fit = True
        self.smooth = True
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 160)

    def set_image(self, image: QImage | QPixmap | None, smooth: bool = True) -> None:
        if image is None:
            self._pixmap = QPixmap()
        else:
            self._pixmap = image if isinstance(image, QPixmap) else QPixmap.fromImage(image)
        self.smooth = smooth
        self.update()

    def pixmap(self) -> QPixmap:
        return self._pixmap

    def sizeHint(self) -> QSize:
        return QSize(512, 512)

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(30, 30, 34))
        if self._pixmap.isNull():
            painter.setPen(QColor(150, 150, 150))
            painter.drawText(self.rect().adjusted(20, 20, -20, -20),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.message)
            return
        size = self._pixmap.size()
        if self.fit:
            size = size.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        target = QRectF((self.width() - size.width()) / 2, (self.height() - size.height()) / 2,
                        size.width(), size.height())
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.smooth)
        painter.drawPixmap(target, self._pixmap, QRectF(self._pixmap.rect()))
