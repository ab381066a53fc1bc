"""The LoRA and embedding browser beside the prompt: search, the base each fits, click to insert.

Files are read (headers, and LoRA hashes) on the background helper. Entries that do not fit the
selected model are greyed, with the reason in their tooltip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1


@dataclass(frozen=True)
class Entry:
    kind: str  # "LoRA" or "embedding"
    name: str
    base: str
    context: int | None  # cross-attention width it fits; None: any
    path: Path
    problem: str = ""  # why it cannot be used at all

    def tag(self) -> str:
        return f"<lora:{self.name}:1>" if self.kind == "LoRA" else self.name


def read_entries(lora_folders: list[str], embedding_folders: list[str]) -> list[Entry]:
    """Every LoRA and embedding the app can see (runs on the background helper: it reads files)."""
    from desktop.engine import embeddings, loras

    good, bad = loras.list_loras(loras.lora_folders(lora_folders))
    entries = [Entry("LoRA", lora.name, lora.base, lora.context, lora.path) for lora in good]
    entries += [Entry("LoRA", path.stem, "unusable", None, path, problem) for path, problem in bad]
    for name, path in embeddings.find_files(embeddings.embedding_folders(embedding_folders)).items():
        found = embeddings.base_of(path)
        entries.append(Entry("embedding", name, found[0], found[1], path) if found else
                       Entry("embedding", name, "unusable", None, path, "not a .safetensors embedding"))
    return sorted(entries, key=lambda e: (e.kind, e.name.lower()))


class NetworkBrowser(QWidget):
    insert = Signal(str)  # the text to put in the prompt
    error = Signal(str)

    def __init__(self, tasks, settings_source, parent=None):
        super().__init__(parent)
        self.tasks = tasks
        self.settings_source = settings_source  # () -> Settings
        self.model_context: int | None = None
        self.model_label = ""
        self.entries: list[Entry] = []
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search LoRAs and embeddings…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._fill)
        refresh = QPushButton("Rescan")
        refresh.setToolTip("Read the LoRA and embedding folders again")
        refresh.clicked.connect(self.reload)
        self.list = QListWidget()
        self.list.itemClicked.connect(self._chosen)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #889;")
        row = QHBoxLayout()
        row.addWidget(self.search, 1)
        row.addWidget(refresh)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.hint)

    def reload(self) -> None:
        settings = self.settings_source()
        lora_folders, embedding_folders = list(settings.lora_folders), list(settings.embedding_folders)
        self.tasks.run(lambda: read_entries(lora_folders, embedding_folders), self._loaded, self.error.emit)

    def set_model(self, context: int | None, label: str) -> None:
        """The selected model's cross-attention width (None: unknown) greys what does not fit."""
        self.model_context, self.model_label = context, label
        self._fill()

    def _loaded(self, entries: list[Entry]) -> None:
        self.entries = entries
        self._fill()

    def _fill(self) -> None:
        from desktop.engine.loras import lora_folders

        words = self.search.text().lower().split()
        self.list.clear()
        for entry in self.entries:
            text = f"{entry.name}  ·  {entry.kind}  ·  {entry.base}"
            if not all(w in text.lower() for w in words):
                continue
            item = QListWidgetItem(text)
            item.setData(ENTRY_ROLE, entry)
            reason = self._why_not(entry)
            item.setToolTip(f"{entry.path}\n{reason or 'Click to insert ' + entry.tag()}")
            if reason:
                item.setForeground(QColor(140, 140, 150))
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
            self.list.addItem(item)
        if not self.entries:
            self.hint.setText(f"No LoRAs or embeddings yet: copy .safetensors files into {lora_folders()[0]} "
                              "or the embeddings folder beside it.")
        else:
            self.hint.setText("Click to insert into the prompt; greyed ones do not fit the selected model.")

    def _why_not(self, entry: Entry) -> str:
        if entry.problem:
            return entry.problem
        if self.model_context and entry.context and entry.context != self.model_context:
            return f"For {entry.base}; the selected model is {self.model_label}."
        return ""

    def _chosen(self, item: QListWidgetItem) -> None:
        entry = item.data(ENTRY_ROLE)
        if entry is not None and not self._why_not(entry):
            self.insert.emit(entry.tag())
