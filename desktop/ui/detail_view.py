"""One image in full: fit or 100 %, every piece of metadata, and the actions."""

from __future__ import annotations

import html
from datetime import datetime

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (QDialog, QFormLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSplitter,
                               QVBoxLayout, QWidget)

from desktop.engine.request import KIND_LABELS
from desktop.gallery.records import ImageRecord
from desktop.ui.image_view import ImageView

SOURCES = {"latent_studio": "Latent Studio", "a1111": "AUTOMATIC1111 / Forge",
           "a1111-stealth": "AUTOMATIC1111 / Forge (hidden in the pixels)", "fooocus": "Fooocus",
           "novelai": "NovelAI", "swarmui": "SwarmUI", "drawthings": "Draw Things", "comfyui": "ComfyUI",
           "invokeai": "InvokeAI", "none": "none (settings unknown)"}


class DetailDialog(QDialog):
    def __init__(self, record: ImageRecord, actions, parent=None):
        super().__init__(parent)
        self.record, self.actions = record, actions
        self.setWindowTitle(record.path.name)
        self.resize(1100, 720)
        self.view = ImageView("The file is missing." if record.missing else "Cannot read this image.")
        self.view.set_image(QImage(str(record.path)))
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.view)
        self.scroll.setWidgetResizable(True)
        self.scroll.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.zoom = QPushButton("100 %")
        self.zoom.setCheckable(True)
        self.zoom.setToolTip("Show at actual size (scroll to pan) or fit the window")
        self.zoom.toggled.connect(self._set_zoom)
        splitter = QSplitter()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.scroll, 1)
        left_layout.addWidget(self.zoom, 0, Qt.AlignmentFlag.AlignLeft)
        splitter.addWidget(left)
        splitter.addWidget(self._side())
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        QVBoxLayout(self).addWidget(splitter)

    def _side(self) -> QWidget:
        r, q = self.record, self.record.request
        side = QWidget()
        form = QFormLayout()
        created = datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M:%S")
        rows = [("Prompt", q.prompt), ("Negative", q.negative_prompt or "—"), ("Model", q.model or "—"),
                ("Seed", q.seed), ("Steps", q.steps), ("Guidance", q.guidance), ("Size", f"{q.width} × {q.height}"),
                ("Sampler", q.scheduler or "—"), ("Made", created), ("Metadata", SOURCES.get(r.source, r.source)),
                ("Tags", " ".join(r.tags) or "—"), ("File", str(r.path) + ("  (missing)" if r.missing else ""))]
        for name, value in rows:
            label = QLabel("—" if value is None else str(value))
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            form.addRow(f"<b>{name}</b>", label)
        buttons = QVBoxLayout()
        for text, slot in [("Reuse settings", lambda: (self.actions.reuse_settings(r), self.accept())),
                           ("Edit", lambda: (self.actions.edit.emit(r), self.accept())),
                           ("Upscale ×2", lambda: (self.actions.upscale.emit(r), self.accept())),
                           ("Copy image", lambda: self.actions.copy_image(r)),
                           ("Copy prompt", lambda: self.actions.copy_prompt(r)),
                           ("Open file location", lambda: self.actions.open_location(r)),
                           ("Remove favourite" if r.favourite else "★ Favourite",
                            lambda: self._close_if(self.actions.set_favourite([r], not r.favourite))),
                           ("Export…", lambda: self.actions.export([r])),
                           ("Remove from gallery", lambda: self._close_if(self.actions.remove([r]))),
                           ("Move file to trash…", lambda: self._close_if(self.actions.trash([r])))]:
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        self.file_notes = QLabel()  # filled from the file itself, read off the GUI thread
        self.file_notes.setWordWrap(True)
        self.file_notes.setTextFormat(Qt.TextFormat.PlainText)
        self.file_notes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.file_notes.setStyleSheet("color: #aab;")
        self._read_file_metadata()
        layout = QVBoxLayout(side)
        layout.addLayout(form)
        layout.addWidget(self._lineage())
        layout.addWidget(self.file_notes)
        row = QHBoxLayout()
        row.addLayout(buttons)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addStretch(1)
        return side

    def _lineage(self) -> QLabel:
        """What this image was made from and what was made from it, as links to their detail views."""
        from desktop.errors import LatentStudioError

        q = self.record.request
        try:
            lineage = self.actions.gallery.lineage(self.record)
        except LatentStudioError as exc:
            return QLabel(f"Lineage unavailable: {exc}")
        self._linked = {}
        lines = []
        if q.edit is not None:
            lines.append(f"<b>{KIND_LABELS[q.kind].capitalize()}</b>, strength {q.edit.resolved_strength():g}")
        for item in lineage.made_from:
            if item.record is not None:
                lines.append(f"Made from ({item.role}): {self._link(item.record)}")
            else:
                lines.append(f"Made from ({item.role}): <a href='file:{item.digest}'>the kept copy</a>")
                self._linked[f"file:{item.digest}"] = item.path
        if lineage.made_into:
            lines.append("Made into: " + ", ".join(self._link(child) for child in lineage.made_into[:12])
                         + (f" and {len(lineage.made_into) - 12} more" if len(lineage.made_into) > 12 else ""))
        label = QLabel("<br>".join(lines))
        label.setWordWrap(True)
        label.setTextFormat(Qt.TextFormat.RichText)
        label.linkActivated.connect(self._follow)
        return label

    def _link(self, record) -> str:
        key = f"image:{record.id}"
        self._linked[key] = record
        return f"<a href='{key}'>{html.escape(record.path.name)}</a>"

    def _follow(self, key: str) -> None:
        target = self._linked[key]
        if isinstance(target, ImageRecord):
            self.actions.open_record.emit(target)
        else:
            from PySide6.QtCore import QUrl
            from PySide6.QtGui import QDesktopServices

            QDesktopServices.openUrl(QUrl.fromLocalFile(str(target)))

    def _read_file_metadata(self) -> None:
        from desktop.gallery.metadata import read_image_metadata

        path = self.record.path
        self.actions.tasks.run(lambda: read_image_metadata(path)[1], self._show_file_metadata, lambda _m: None)

    def _show_file_metadata(self, meta) -> None:
        lines = [f"Did not map: {note}" for note in meta.notes]
        lines += [f"Other metadata, {key}: {excerpt}" for key, excerpt in meta.other]
        try:
            self.file_notes.setText("\n".join(lines))
        except RuntimeError:  # the view was closed before the file was read
            pass

    def _close_if(self, done: bool) -> None:
        """An action that went ahead closes the view; "No" or a failure keeps it open."""
        if done:
            self.accept()

    def _set_zoom(self, actual: bool) -> None:
        self.view.fit = not actual
        self.scroll.setWidgetResizable(not actual)
        if actual:
            self.view.resize(self.view.pixmap().size())
        self.zoom.setText("Fit" if actual else "100 %")
        self.view.update()
