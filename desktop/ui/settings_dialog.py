"""Settings: device, precision, attention slicing, model, LoRA and embedding folders, gallery folder,
metadata privacy."""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QListWidget, QPushButton, QVBoxLayout, QWidget)

from desktop.settings import DEVICE_CHOICES, PRECISION_CHOICES, SLICING_CHOICES, Settings


class SettingsDialog(QDialog):
    def __init__(self, settings: Settings, default_gallery: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self._settings = settings
        self.device = _combo(DEVICE_CHOICES, settings.device)
        self.precision = _combo(PRECISION_CHOICES, settings.precision)
        self.slicing = _combo(SLICING_CHOICES, settings.attention_slicing)
        self.folders = FolderList(settings.model_folders, "Add a folder of models")
        self.lora_folders = FolderList(settings.lora_folders, "Add a folder of LoRAs (e.g. A1111's models/Lora)")
        self.embedding_folders = FolderList(settings.embedding_folders, "Add a folder of embeddings")
        self.gallery = QLineEdit(settings.gallery_dir or "")
        self.gallery.setPlaceholderText(default_gallery)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._pick_gallery)
        self.privacy = QCheckBox("Write images without prompt and settings (no text chunks)")
        self.privacy.setChecked(settings.strip_metadata)
        self.fast_decode = QCheckBox("Fast decode with a tiny autoencoder (TAESD) when one is installed")
        self.fast_decode.setChecked(settings.fast_decode)
        self.low_memory = QCheckBox("Low memory: keep models in main memory until used (CUDA, MPS); large "
                                    "images decode in tiles")
        self.low_memory.setChecked(settings.low_memory)

        form = QFormLayout()
        form.addRow("Device", self.device)
        form.addRow("Precision", self.precision)
        form.addRow("Attention slicing", self.slicing)
        form.addRow(_hint("auto picks the fastest safe choice for this machine: CUDA > MPS > CPU; fp16 on GPUs, "
                          "fp32 on most CPUs; slicing on MPS. Applies to the next image."))
        form.addRow("Speed", self.fast_decode)
        form.addRow("Memory", self.low_memory)
        form.addRow(_hint("Fast decode makes the final image about 10x faster at a little less detail; previews "
                          "use a tiny autoencoder whenever one serves the model. Low memory trades speed for "
                          "memory on a GPU."))
        form.addRow("Model folders", self.folders)
        form.addRow("LoRA folders", self.lora_folders)
        form.addRow("Embedding folders", self.embedding_folders)
        form.addRow(_hint("Besides the models, loras and embeddings folders in the app's data folder, which "
                          "are always searched."))
        gallery_row = QHBoxLayout()
        gallery_row.addWidget(self.gallery, 1)
        gallery_row.addWidget(browse)
        form.addRow("Gallery folder", _wrap(gallery_row))
        form.addRow("Privacy", self.privacy)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def _pick_gallery(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Gallery folder")
        if folder:
            self.gallery.setText(folder)

    def result_settings(self) -> Settings:
        return dataclasses.replace(
            self._settings, device=self.device.currentText(), precision=self.precision.currentText(),
            attention_slicing=self.slicing.currentText(),
            model_folders=self.folders.paths(), lora_folders=self.lora_folders.paths(),
            embedding_folders=self.embedding_folders.paths(),
            gallery_dir=self.gallery.text().strip() or None, strip_metadata=self.privacy.isChecked(),
            fast_decode=self.fast_decode.isChecked(), low_memory=self.low_memory.isChecked())


class FolderList(QWidget):
    """A list of folders with Add and Remove."""

    def __init__(self, folders: list[str], prompt: str):
        super().__init__()
        self.prompt = prompt
        self.list = QListWidget()
        self.list.addItems(folders)
        self.list.setMaximumHeight(72)
        add, remove = QPushButton("Add folder…"), QPushButton("Remove")
        add.clicked.connect(self._add)
        remove.clicked.connect(lambda: [self.list.takeItem(self.list.row(i)) for i in self.list.selectedItems()])
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(remove)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        layout.addLayout(buttons)

    def add_folder(self, folder: str) -> None:
        if folder and folder not in self.paths():
            self.list.addItem(folder)

    def paths(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def _add(self) -> None:
        self.add_folder(QFileDialog.getExistingDirectory(self, self.prompt))


def _combo(choices, current: str) -> QComboBox:
    combo = QComboBox()
    combo.addItems(list(choices))
    combo.setCurrentText(current)
    return combo


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: #888;")
    return label


def _wrap(layout) -> QWidget:
    widget = QWidget()
    layout.setContentsMargins(0, 0, 0, 0)
    widget.setLayout(layout)
    return widget
