"""The gallery browser: a paged thumbnail grid with search and filters.

The model fetches records a page at a time (Qt asks for more as the user scrolls) and thumbnails
are made by the background-task helper, newest request first, off the GUI thread; only the visible
ones are requested and a bounded cache keeps memory flat at tens of thousands of images (after
calibre's alternate_views). After a job or an action the grid changes by id, never by a reset.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from PySide6.QtCore import QAbstractListModel, QModelIndex, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout, QLabel, QLineEdit, QListView,
                               QStackedLayout, QVBoxLayout, QWidget)

from desktop.gallery.records import ImageFilter, ImageRecord

PAGE = 200
CELL = 176  # thumbnail cell edge, px
CACHE_LIMIT = 600  # thumbnails held in memory
RecordRole = Qt.ItemDataRole.UserRole + 1

DATE_FILTERS = [("Any time", None), ("Today", 1), ("Last 7 days", 7), ("Last 30 days", 30), ("Last year", 365)]


class GalleryModel(QAbstractListModel):
    """Records from the gallery, newest first, loaded a page at a time."""

    def __init__(self, gallery, tasks, parent=None):
        super().__init__(parent)
        self.gallery = gallery
        self.tasks = tasks  # BackgroundTasks: thumbnails are made newest request first
        self.filter = ImageFilter()
        self.records: list[ImageRecord] = []
        self.total = 0
        self._thumbs: OrderedDict[str, QPixmap] = OrderedDict()
        self._pending: set[str] = set()
        self._rows: dict[str, int] | None = None  # path -> row, rebuilt after rows move
        self._placeholder = QPixmap(CELL - 16, CELL - 16)
        self._placeholder.fill(QColor(60, 60, 64))

    def set_filter(self, image_filter: ImageFilter) -> None:
        self.filter = image_filter
        self.refresh()

    def refresh(self) -> None:
        self.beginResetModel()
        self._rows = None
        self.records = self.gallery.page(self.filter, 0, PAGE)
        self.total = self.gallery.count(self.filter)
        self.endResetModel()

    # --- what changed, by id (no reset after every job) ---------------------------------------

    def add(self, records: list[ImageRecord]) -> None:
        """New images (always the newest) go on top when the filter shows them."""
        shown = self.gallery.matching(self.filter, [r.id for r in records])
        if not shown:
            return
        self.beginInsertRows(QModelIndex(), 0, len(shown) - 1)
        self._rows = None
        self.records[:0] = shown
        self.total += len(shown)
        self.endInsertRows()

    def change(self, image_ids: list[int]) -> None:
        """Rows re-read; a row the filter no longer shows (unfavourited under ★) leaves."""
        wanted = set(image_ids)
        fresh = {r.id: r for r in self.gallery.matching(self.filter, list(wanted))}
        for row in reversed(range(len(self.records))):
            record = self.records[row]
            if record.id not in wanted:
                continue
            if record.id in fresh:
                self.records[row] = fresh[record.id]
                self.dataChanged.emit(self.index(row), self.index(row))
            else:
                self._remove_row(row)

    def remove(self, image_ids: list[int]) -> None:
        gone = set(image_ids)
        for row in reversed(range(len(self.records))):
            if self.records[row].id in gone:
                self._remove_row(row)

    def _remove_row(self, row: int) -> None:
        self.beginRemoveRows(QModelIndex(), row, row)
        self._rows = None
        del self.records[row]
        self.total -= 1
        self.endRemoveRows()

    # --- Qt's model interface ----------------------------------------------------------------

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.records)

    def canFetchMore(self, parent=QModelIndex()) -> bool:
        return not parent.isValid() and len(self.records) < self.total

    def fetchMore(self, parent=QModelIndex()) -> None:
        more = self.gallery.page(self.filter, len(self.records), PAGE)
        if more:
            first = len(self.records)
            self.beginInsertRows(QModelIndex(), first, first + len(more) - 1)
            if self._rows is not None:
                self._rows.update((str(r.path), first + i) for i, r in enumerate(more))
            self.records.extend(more)
            self.endInsertRows()

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.records):
            return None
        record = self.records[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            text = record.request.prompt.replace("\n", " ") or record.path.name
            return ("★ " if record.favourite else "") + (text[:40] + "…" if len(text) > 40 else text)
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(record)
        if role == Qt.ItemDataRole.ToolTipRole:
            missing = "\n(file missing)" if record.missing else ""
            r = record.request
            return f"{r.prompt}\n{r.width}×{r.height} · seed {r.seed} · {r.model or '?'}{missing}"
        if role == RecordRole:
            return record
        return None

    def _thumbnail(self, record: ImageRecord):
        key = str(record.path)
        if key in self._thumbs:
            self._thumbs.move_to_end(key)
            return self._thumbs[key]
        if key not in self._pending and not record.missing:
            self._pending.add(key)
            self.tasks.run(lambda: _thumbnail_image(key), lambda image: self._thumbnail_ready(key, image),
                           lambda _message: self._thumbnail_ready(key, QImage()), newest_first=True)
        return self._placeholder

    def _thumbnail_ready(self, path: str, image: QImage) -> None:
        self._pending.discard(path)
        self._thumbs[path] = self._placeholder if image.isNull() else QPixmap.fromImage(image)
        while len(self._thumbs) > CACHE_LIMIT:
            self._thumbs.popitem(last=False)
        row = self._row_of(path)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    def _row_of(self, path: str) -> int | None:
        """Row by path through a map made once per change of rows (a scan per thumbnail stalled the
        grid at 10,000 images)."""
        if self._rows is None:
            self._rows = {str(record.path): row for row, record in enumerate(self.records)}
        return self._rows.get(path)

    def record_at(self, row: int) -> ImageRecord:
        return self.records[row]


def _thumbnail_image(path: str) -> QImage:
    """On a pool thread: the cached thumbnail file, made first when needed (null when unreadable)."""
    from pathlib import Path

    from desktop.gallery.thumbnails import thumbnail

    try:
        image = QImage(str(thumbnail(Path(path))))
    except Exception:  # unreadable, vanished or a decompression bomb: a placeholder cell
        return QImage()
    side = CELL - 16  # fill the cell (the shipped model's 128 px images are scaled up too), off the GUI thread
    return image.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


class GalleryBrowser(QWidget):
    """Search box, filters and the grid; opens the detail view on double click."""

    open_record = Signal(object)  # ImageRecord
    context_menu = Signal(object, object)  # list[ImageRecord], global position

    def __init__(self, gallery, tasks, parent=None):
        super().__init__(parent)
        self.model = GalleryModel(gallery, tasks, self)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search prompts and tags…")
        self.search.setClearButtonEnabled(True)
        self.models = QComboBox()
        self.loras = QComboBox()
        self.loras.setToolTip("Only images made with this LoRA")
        self.favourites = QCheckBox("★ Favourites")
        self.dates = QComboBox()
        self.dates.addItems([label for label, _ in DATE_FILTERS])
        self.count_label = QLabel()
        self._debounce = QTimer(self, singleShot=True, interval=200)
        self._debounce.timeout.connect(self.apply_filter)
        self.search.textChanged.connect(self._debounce.start)
        for combo in (self.models, self.loras, self.dates):
            combo.currentIndexChanged.connect(self.apply_filter)
        self.favourites.toggled.connect(self.apply_filter)
        self.grid = self._make_grid()
        self.empty = QLabel()
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet("color: #888; font-size: 15px;")
        bar = QHBoxLayout()
        bar.addWidget(self.search, 3)
        bar.addWidget(self.models, 1)
        bar.addWidget(self.loras)
        bar.addWidget(self.dates)
        bar.addWidget(self.favourites)
        bar.addWidget(self.count_label)
        self.stack = QStackedLayout()
        self.stack.addWidget(self.grid)
        self.stack.addWidget(self.empty)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addLayout(self.stack)
        self.reload()

    def _make_grid(self) -> QListView:
        grid = QListView()
        grid.setModel(self.model)
        grid.setViewMode(QListView.ViewMode.IconMode)
        grid.setResizeMode(QListView.ResizeMode.Adjust)
        grid.setMovement(QListView.Movement.Static)
        grid.setUniformItemSizes(True)
        grid.setIconSize(QSize(CELL - 16, CELL - 16))
        grid.setGridSize(QSize(CELL, CELL + 34))
        grid.setWordWrap(True)
        grid.setSpacing(6)
        grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        grid.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        grid.customContextMenuRequested.connect(
            lambda pos: self.context_menu.emit(self.selected(), grid.viewport().mapToGlobal(pos)))
        grid.doubleClicked.connect(lambda index: self.open_record.emit(self.model.record_at(index.row())))
        return grid

    def selected(self) -> list[ImageRecord]:
        return [self.model.record_at(i.row()) for i in sorted(self.grid.selectedIndexes(), key=lambda i: i.row())]

    def set_gallery(self, gallery) -> None:
        self.model.gallery = gallery
        self.reload()

    def images_added(self, records: list[ImageRecord]) -> None:
        if any(r.request.model and self.models.findData(r.request.model) < 0 for r in records) or any(
                "<lora:" in r.request.prompt for r in records):
            self.reload()  # a model or a LoRA the filter menus may not list yet
            return
        self.model.add(records)
        self._show_count()

    def images_changed(self, image_ids: list[int]) -> None:
        self.model.change(image_ids)
        self._show_count()

    def images_removed(self, image_ids: list[int]) -> None:
        self.model.remove(image_ids)
        self._show_count()

    def reload(self) -> None:
        """Refresh the model list and the whole grid (after a rescan, an import, a gallery switch)."""
        current = self.models.currentData()
        self.models.blockSignals(True)
        self.models.clear()
        self.models.addItem("All models", None)
        for name in self.model.gallery.models():
            self.models.addItem(name, name)
        self.models.setCurrentIndex(max(0, self.models.findData(current)))
        self.models.blockSignals(False)
        current = self.loras.currentData()
        self.loras.blockSignals(True)
        self.loras.clear()
        self.loras.addItem("Any LoRA", None)
        for name in self.model.gallery.loras():
            self.loras.addItem(f"<lora:{name}>", name)
        self.loras.setCurrentIndex(max(0, self.loras.findData(current)))
        self.loras.setVisible(self.loras.count() > 1)
        self.loras.blockSignals(False)
        self.apply_filter()

    def current_filter(self) -> ImageFilter:
        days = DATE_FILTERS[self.dates.currentIndex()][1]
        return ImageFilter(text=self.search.text(), model=self.models.currentData(), lora=self.loras.currentData(),
                           favourites_only=self.favourites.isChecked(),
                           since=time.time() - days * 86400 if days else None)

    def apply_filter(self) -> None:
        self.model.set_filter(self.current_filter())
        self._show_count()

    def _show_count(self) -> None:
        total = self.model.total
        self.count_label.setText(f"{total} image{'s' if total != 1 else ''}")
        filtered = self.current_filter() != ImageFilter()
        if total:
            self.stack.setCurrentWidget(self.grid)
        else:
            self.empty.setText("No images match these filters." if filtered else
                               "No images yet.\nWrite a prompt on the left and press Generate.")
            self.stack.setCurrentWidget(self.empty)
