"""Prompt history: searchable, pinned first; a click brings prompt and settings back."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QLineEdit, QListWidget, QListWidgetItem, QMenu, QVBoxLayout, QWidget

from desktop.engine.request import GenerationRequest
from desktop.errors import LatentStudioError


class HistoryPanel(QWidget):
    chosen = Signal(object)  # GenerationRequest
    failed = Signal(str)  # a history write failed: for the banner

    def __init__(self, gallery, parent=None):
        super().__init__(parent)
        self.gallery = gallery
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search prompt history…")
        self.search.setClearButtonEnabled(True)
        self.list = QListWidget()
        self.list.setWordWrap(True)
        self.list.setAlternatingRowColors(True)
        self.list.itemClicked.connect(self._choose)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self._debounce = QTimer(self, singleShot=True, interval=150)
        self._debounce.timeout.connect(self.reload)
        self.search.textChanged.connect(self._debounce.start)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.search)
        layout.addWidget(self.list)
        self.reload()

    def reload(self) -> None:
        self.list.clear()
        for entry in self.gallery.history(self.search.text()):
            text = entry.prompt.replace("\n", " ") or "(empty prompt)"
            item = QListWidgetItem(("📌 " if entry.pinned else "") + (text[:120] + "…" if len(text) > 120 else text))
            item.setToolTip(f"{entry.prompt}\nNegative: {entry.negative_prompt or '—'}\nused {entry.use_count}×")
            item.setData(Qt.ItemDataRole.UserRole, entry)
            self.list.addItem(item)

    def _choose(self, item: QListWidgetItem) -> None:
        entry = item.data(Qt.ItemDataRole.UserRole)
        try:
            request, _ = GenerationRequest.from_dict(entry.settings).keep_valid()
        except (TypeError, AttributeError):  # settings written by something else entirely
            request = GenerationRequest(prompt=entry.prompt, negative_prompt=entry.negative_prompt)
        self.chosen.emit(request)

    def _pin(self, entry) -> None:
        try:
            self.gallery.set_pinned(entry.id, not entry.pinned)
        except LatentStudioError as exc:
            self.failed.emit(str(exc))
            return
        self.reload()

    def _menu(self, pos) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        entry = item.data(Qt.ItemDataRole.UserRole)
        menu = QMenu(self)
        menu.addAction("Unpin" if entry.pinned else "📌 Pin to top", lambda: self._pin(entry))
        menu.exec(self.list.viewport().mapToGlobal(pos))
