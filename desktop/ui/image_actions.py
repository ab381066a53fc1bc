"""What a user can do with gallery images, shared by the grid's context menu and the detail view."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QImage
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QWidget

from desktop.errors import LatentStudioError
from desktop.gallery.records import ImageRecord


class ImageActions(QObject):
    reuse = Signal(object)  # GenerationRequest
    changed = Signal()  # the gallery changed: views refresh
    error = Signal(str)

    def __init__(self, gallery, parent: QWidget):
        super().__init__(parent)
        self.gallery = gallery
        self.window = parent

    def menu(self, records: list[ImageRecord], parent: QWidget) -> QMenu:
        menu = QMenu(parent)
        if not records:
            return menu
        one = records[0] if len(records) == 1 else None
        if one:
            menu.addAction("Reuse settings", lambda: self.reuse_settings(one))
            menu.addAction("Copy image", lambda: self.copy_image(one))
            menu.addAction("Copy prompt", lambda: self.copy_prompt(one))
            menu.addAction("Open file location", lambda: self.open_location(one))
            menu.addSeparator()
        favourite = not all(r.favourite for r in records)
        menu.addAction("★ Favourite" if favourite else "Remove favourite", lambda: self.set_favourite(records, favourite))
        menu.addAction("Export…", lambda: self.export(records))
        menu.addSeparator()
        menu.addAction("Remove from gallery (keep file)", lambda: self.remove(records))
        menu.addAction("Move file to trash…", lambda: self.trash(records))
        return menu

    def reuse_settings(self, record: ImageRecord) -> None:
        from desktop.gallery.metadata import ImageMetadata

        meta = ImageMetadata(**{k: getattr(record, k) for k in ("prompt", "negative_prompt", "model", "seed", "steps",
                                                                  "guidance", "width", "height", "scheduler")})
        self.reuse.emit(meta.request())

    def copy_image(self, record: ImageRecord) -> None:
        image = QImage(str(record.path))
        if image.isNull():
            self.error.emit(f"Cannot read {record.path}; it may have been moved or deleted.")
            return
        QGuiApplication.clipboard().setImage(image)

    def copy_prompt(self, record: ImageRecord) -> None:
        QGuiApplication.clipboard().setText(record.prompt)

    def open_location(self, record: ImageRecord) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(record.path.parent)))

    def set_favourite(self, records: list[ImageRecord], favourite: bool) -> None:
        self._do(lambda: self.gallery.set_favourite([r.id for r in records], favourite))

    def remove(self, records: list[ImageRecord]) -> None:
        self._do(lambda: self.gallery.remove([r.id for r in records]))

    def trash(self, records: list[ImageRecord]) -> None:
        what = f"{len(records)} images" if len(records) > 1 else records[0].path.name
        answer = QMessageBox.question(self.window, "Move to trash",
                                      f"Move {what} to the trash? You can restore from the trash later.")
        if answer == QMessageBox.StandardButton.Yes:
            self._do(lambda: self.gallery.delete_files([r.id for r in records]))

    def export(self, records: list[ImageRecord]) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Export to folder")
        if not folder:
            return
        keep = QMessageBox.question(self.window, "Export", "Keep the prompt and settings in the exported files?")
        self._do(lambda: self.gallery.export([r.id for r in records], Path(folder),
                                             metadata=keep == QMessageBox.StandardButton.Yes))

    def _do(self, operation) -> None:
        try:
            operation()
        except LatentStudioError as exc:
            self.error.emit(str(exc))
        self.changed.emit()
