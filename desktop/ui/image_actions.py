"""What a user can do with gallery images, shared by the grid's context menu and the detail view.

Every action reports its failure in the window (never only on stderr). Export and trash touch files
and run on the background-task helper with their own database connection; the views are told which
images changed or went away, by id.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QImage
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QWidget

from desktop.errors import LatentStudioError
from desktop.gallery.records import ImageRecord

log = logging.getLogger(__name__)


class ImageActions(QObject):
    reuse = Signal(object)  # ImageRecord whose settings go to the prompt panel
    edit = Signal(object)  # ImageRecord to put in the edit panel's init-image slot
    explore = Signal(object)  # ImageRecord to show in the Explore tab (the forward process)
    upscale = Signal(object)  # ImageRecord to enlarge (a job with its own settings)
    open_record = Signal(object)  # ImageRecord to show in the detail view (lineage links)
    changed = Signal(list)  # image ids whose row changed
    removed = Signal(list)  # image ids that left the gallery
    error = Signal(str)
    status = Signal(str)

    def __init__(self, gallery, tasks, parent: QWidget):
        super().__init__(parent)
        self.gallery = gallery
        self.tasks = tasks
        self.window = parent

    def menu(self, records: list[ImageRecord], parent: QWidget) -> QMenu:
        menu = QMenu(parent)
        if not records:
            return menu
        one = records[0] if len(records) == 1 else None
        if one:
            menu.addAction("Reuse settings", lambda: self.reuse_settings(one))
            menu.addAction("Edit", lambda: self.edit.emit(one))
            menu.addAction("Upscale ×2", lambda: self.upscale.emit(one))
            menu.addAction("Explore (noise it step by step)", lambda: self.explore.emit(one))
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
        self.reuse.emit(record)

    def copy_image(self, record: ImageRecord) -> None:
        image = QImage(str(record.path))
        if image.isNull():
            self.error.emit(f"Cannot read {record.path}; it may have been moved or deleted.")
            return
        QGuiApplication.clipboard().setImage(image)

    def copy_prompt(self, record: ImageRecord) -> None:
        QGuiApplication.clipboard().setText(record.request.prompt)

    def open_location(self, record: ImageRecord) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(record.path.parent)))

    def set_favourite(self, records: list[ImageRecord], favourite: bool) -> bool:
        ids = [r.id for r in records]
        return self._do(lambda: self.gallery.set_favourite(ids, favourite), lambda: self.changed.emit(ids))

    def remove(self, records: list[ImageRecord]) -> bool:
        ids = [r.id for r in records]
        return self._do(lambda: self.gallery.remove(ids), lambda: self.removed.emit(ids))

    def trash(self, records: list[ImageRecord]) -> bool:
        """True when the user said yes (the move itself then runs in the background)."""
        what = f"{len(records)} images" if len(records) > 1 else records[0].path.name
        answer = QMessageBox.question(self.window, "Move to trash",
                                      f"Move {what} to the trash? You can restore from the trash later.")
        if answer != QMessageBox.StandardButton.Yes:
            return False
        ids = [r.id for r in records]
        self._in_background(lambda g: g.delete_files(ids), lambda _n: self.removed.emit(ids),
                            f"Moved {what} to the trash.")
        return True

    def export(self, records: list[ImageRecord]) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Export to folder")
        if not folder:
            return
        keep = QMessageBox.question(self.window, "Export", "Keep the prompt and settings in the exported files?")
        ids, metadata = [r.id for r in records], keep == QMessageBox.StandardButton.Yes
        self._in_background(lambda g: g.export(ids, Path(folder), metadata=metadata), lambda _paths: None,
                            f"Exported {len(ids)} image{'s' if len(ids) > 1 else ''} to {folder}.")

    def _in_background(self, operation, on_done, done_message: str) -> None:
        """File work on the helper's thread, with a database connection of its own."""
        from desktop.gallery.store import Gallery

        root = self.gallery.root

        def work():
            with Gallery(root, reconcile=False) as gallery:
                return operation(gallery)

        def done(result) -> None:
            on_done(result)
            self.status.emit(done_message)

        self.tasks.run(work, done, self.error.emit)

    def _do(self, operation, on_done) -> bool:
        try:
            operation()
        except LatentStudioError as exc:
            self.error.emit(str(exc))
            return False
        except OSError as exc:  # annotations.json beside the images could not be written
            log.exception("gallery action failed")
            self.error.emit(f"Could not change the gallery: {exc.strerror or exc}.")
            return False
        on_done()
        return True
