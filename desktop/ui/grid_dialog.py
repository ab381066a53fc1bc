"""The X/Y/Z plot dialog: up to three settings to vary over the prompt panel's request.

Each axis is a setting and its values, typed as on the command line (`4,8,12`; quote values with
commas: `Euler,"DPM++ 2M"`). What the values would make is checked as they are typed (engine/grid.py,
the same checks as the CLI's), and the count of images shown; the plot then runs as one queued job.
"""

from __future__ import annotations

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QGridLayout, QLabel, QLineEdit, QVBoxLayout)

from desktop.engine import grid
from desktop.engine.request import GenerationRequest
from desktop.errors import LatentStudioError

EXAMPLES = {"steps": "4,8,12", "guidance": "1,3,7", "sampler": 'Euler,"DPM++ 2M",UniPC', "seed": "1,2,3",
            "prompt": "red,green,blue  (the first is searched for in the prompt)", "strength": "0.3,0.5,0.7",
            "lora": "0,0.5,1  (the weight of the prompt's one <lora:…> tag)"}
NONE = "(none)"


class GridDialog(QDialog):
    def __init__(self, base: GenerationRequest, parent=None):
        super().__init__(parent)
        self.setWindowTitle("X/Y/Z plot")
        self.base = base
        self.axes: tuple = (None, None, None)
        rows = QGridLayout()
        self.names, self.values = [], []
        for index, (title, first) in enumerate((("X (across)", "steps"), ("Y (down)", "guidance"), ("Z (side by side)", NONE))):
            name = QComboBox()
            name.addItems(([] if index == 0 else [NONE]) + list(grid.AXIS_NAMES))
            name.setCurrentText(first)
            values = QLineEdit()
            name.currentTextChanged.connect(lambda text, box=values: box.setPlaceholderText(EXAMPLES.get(text, "")))
            values.setPlaceholderText(EXAMPLES.get(first, ""))
            name.currentTextChanged.connect(self._check)
            values.textChanged.connect(self._check)
            rows.addWidget(QLabel(title), index, 0)
            rows.addWidget(name, index, 1)
            rows.addWidget(values, index, 2)
            self.names.append(name)
            self.values.append(values)
        rows.setColumnStretch(2, 1)
        self.verdict = QLabel()
        self.verdict.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Queue the plot")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Every combination is made as a normal gallery image, then one labelled grid. "
                                "What the axes leave open comes from the prompt panel."))
        layout.addLayout(rows)
        layout.addWidget(self.verdict)
        layout.addWidget(self.buttons)
        self.resize(620, 0)
        self._check()

    def set_axis(self, index: int, name: str, values: str) -> None:
        self.names[index].setCurrentText(name)
        self.values[index].setText(values)

    def record(self) -> dict:
        """The chosen axes as a queued job keeps them."""
        return grid.axes_record(*self.axes)

    def _check(self) -> None:
        """Parse and check the axes as typed; OK only when the plot can run."""
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        try:
            axes = []
            for key, name, values in zip("xyz", self.names, self.values):
                if name.currentText() == NONE or (key != "x" and not values.text().strip()):
                    axes.append(None)
                    continue
                axes.append(grid.parse_axis(f"{name.currentText()}={values.text()}", f"{key.upper()}:"))
            if axes[2] is not None and axes[1] is None:
                raise LatentStudioError("Z needs a Y axis too.")
            count = len(grid.cells(self.base, *axes))
        except LatentStudioError as exc:
            self.axes = (None, None, None)
            self.verdict.setText(str(exc))
            self.verdict.setStyleSheet("color: #d9534f;")
            ok.setEnabled(False)
            return
        self.axes = tuple(axes)
        shape = " × ".join(str(len(a.values)) for a in axes if a is not None)
        self.verdict.setText(f"{shape} = {count} image{'s' * (count > 1)}, then the grid.")
        self.verdict.setStyleSheet("color: #5cb85c;")
        ok.setEnabled(True)
