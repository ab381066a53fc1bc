"""The visible job queue: running job first, pending jobs reorderable by drag and drop, cancellable."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QVBoxLayout, QWidget)

from desktop.engine.request import KIND_LABELS

STATE_ROLE = Qt.ItemDataRole.UserRole + 1  # pending or running


class QueuePanel(QWidget):
    cancel_jobs = Signal(list)  # job ids
    moved = Signal(int, int)  # job id, new index among the pending jobs

    def __init__(self, parent=None):
        super().__init__(parent)
        self.title = QLabel()
        self.list = QListWidget()
        self.list.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setMaximumHeight(150)
        self.list.model().rowsMoved.connect(self._rows_moved)
        self.cancel = QPushButton("Cancel selected")
        self.cancel.clicked.connect(lambda: self.cancel_jobs.emit(
            [i.data(Qt.ItemDataRole.UserRole) for i in self.list.selectedItems()]))
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.cancel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.list)
        self.show_jobs([])

    def show_jobs(self, jobs: list) -> None:
        self.list.clear()
        for job in jobs:
            prompt = job.request.prompt.replace("\n", " ") or "(empty prompt)"
            if job.request.edit is not None:  # an edit says which kind, as the detail view does
                prompt = f"[{KIND_LABELS[job.request.kind]}] {prompt}"
            if job.grid:  # an X/Y/Z plot says its axes
                prompt = "[plot " + " × ".join(f"{a['name']} ({len(a['values'])})" for a in job.grid.values()) + f"] {prompt}"
            count = f" ×{job.request.count}" if job.request.count > 1 else ""
            item = QListWidgetItem(("▶ " if job.state == "running" else "") + prompt[:80] + count)
            item.setData(Qt.ItemDataRole.UserRole, job.id)
            item.setData(STATE_ROLE, job.state)
            if job.state == "running":  # the running job stays on top
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsDragEnabled)
            self.list.addItem(item)
        pending = sum(1 for j in jobs if j.state == "pending")
        self.title.setText(f"Queue: {pending} waiting" if jobs else "Queue: empty")
        self.cancel.setEnabled(bool(jobs))
        self.setVisible(bool(jobs))

    def _rows_moved(self, _parent, start, _end, _dest, row) -> None:
        item = self.list.item(row if row < start else row - 1)
        if item is None:
            return
        running = sum(1 for i in range(self.list.count()) if self.list.item(i).data(STATE_ROLE) == "running")
        self.moved.emit(item.data(Qt.ItemDataRole.UserRole), max(0, self.list.row(item) - running))
