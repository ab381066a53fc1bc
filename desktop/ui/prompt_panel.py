"""Prompt, negative prompt and every generation setting; turns them into a GenerationRequest and back."""

from __future__ import annotations

from PySide6.QtCore import QRegularExpression, Qt, Signal
from PySide6.QtGui import QColor, QFont, QRegularExpressionValidator, QSyntaxHighlighter, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPlainTextEdit, QPushButton, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from desktop.engine.request import (MAX_COUNT, MAX_GUIDANCE, MAX_SIDE, MAX_STEPS, MIN_SIDE, SEED_LIMIT, GenerationRequest,
                                    random_seed)
from desktop.engine.prompt_syntax import adjust_weight, unbalanced_brackets
from desktop.engine.schedulers import SCHEDULER_NAMES

SIZE_PRESETS = [("Model's size", None), ("512 × 512", (512, 512)), ("768 × 768", (768, 768)),
                ("512 × 768 portrait", (512, 768)), ("768 × 512 landscape", (768, 512)),
                ("1024 × 1024", (1024, 1024)), ("Custom", "custom")]
MODEL_DEFAULT = "Model's default"


class PromptPanel(QWidget):
    generate_requested = Signal()
    plot_requested = Signal()  # the X/Y/Z plot dialog
    cancel_requested = Signal()
    model_changed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._defaults = None  # ModelDefaults of the selected model
        self.prompt = _editor("Describe the picture, e.g. a red circle on a blue background", 80, 220)
        self.negative = _editor("What to keep out (negative prompt), optional", 44, 120)
        self.model = QComboBox()
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.currentIndexChanged.connect(lambda _i: self.model_changed.emit(self.model_ref()))
        self.steps = _spin(QSpinBox(), 1, MAX_STEPS, 20, "Denoising steps: more is slower and usually cleaner")
        self.guidance = _spin(QDoubleSpinBox(), 0, MAX_GUIDANCE, 7.0, "CFG scale: how strictly to follow the prompt")
        self.guidance.setSingleStep(0.5)
        self.size_preset = QComboBox()
        for label, _ in SIZE_PRESETS:
            self.size_preset.addItem(label)
        self.width_box = _spin(QSpinBox(), MIN_SIDE, MAX_SIDE, 512, "Width in pixels (multiple of 8)")
        self.height_box = _spin(QSpinBox(), MIN_SIDE, MAX_SIDE, 512, "Height in pixels (multiple of 8)")
        for box in (self.width_box, self.height_box):
            box.setSingleStep(8)
        self.size_preset.currentIndexChanged.connect(self._apply_size_preset)
        self.seed = QLineEdit()
        self.seed.setPlaceholderText("random")
        self.seed.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{0,20}")))
        self.seed.setToolTip(f"Seed, 0 to {SEED_LIMIT - 1}: the same seed and settings give the same picture")
        self.lock_seed = QCheckBox("Keep")
        self.lock_seed.setToolTip("Keep this seed for the next images (otherwise each gets a new random seed)")
        dice = QToolButton()
        dice.setText("New")
        dice.setToolTip("New random seed")
        dice.clicked.connect(lambda: self.seed.setText(str(random_seed())))
        self.scheduler = QComboBox()
        self.scheduler.addItems([MODEL_DEFAULT, *SCHEDULER_NAMES])
        self.count = _spin(QSpinBox(), 1, MAX_COUNT, 1, "Images per click (seeds follow each other)")
        self.generate_button = QPushButton("Generate")
        self.generate_button.setDefault(True)
        self.generate_button.setToolTip("Generate (Ctrl+Enter); while busy, adds the job to the queue")
        self.generate_button.clicked.connect(self.generate_requested)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running image (Esc)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.plot_button = QPushButton("X/Y/Z plot…")
        self.plot_button.setToolTip("Vary up to three settings and compare the images in one labelled grid")
        self.plot_button.clicked.connect(self.plot_requested)
        self._layout(dice)

    def _layout(self, dice) -> None:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Model", self.model)
        form.addRow("Steps", self.steps)
        form.addRow("Guidance", self.guidance)
        form.addRow("Size", self.size_preset)
        sizes = QHBoxLayout()
        sizes.addWidget(self.width_box)
        sizes.addWidget(QLabel("×"))
        sizes.addWidget(self.height_box)
        form.addRow("", sizes)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(dice)
        seed_row.addWidget(self.lock_seed)
        form.addRow("Seed", seed_row)
        form.addRow("Sampler", self.scheduler)
        form.addRow("Images", self.count)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.plot_button, 1)
        buttons.addWidget(self.cancel_button, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 4, 0)
        layout.addWidget(QLabel("<b>Prompt</b>"))
        layout.addWidget(self.prompt, 2)
        layout.addWidget(QLabel("<b>Negative prompt</b>"))
        layout.addWidget(self.negative, 1)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addStretch(0)

    # --- models ------------------------------------------------------------------------------

    def set_models(self, models: list, selected: str | None) -> None:
        """models: ModelInfo list; selected: a ref (name or path) or None for the first one."""
        self.model.blockSignals(True)
        self.model.clear()
        for info in models:
            self.model.addItem(f"{info.name}  ·  {info.kind}", info.ref)
            self.model.setItemData(self.model.count() - 1, str(info.path), Qt.ItemDataRole.ToolTipRole)
        index = self.model.findData(selected) if selected else 0
        self.model.setCurrentIndex(max(0, index))
        self.model.blockSignals(False)
        if models:
            self.model_changed.emit(self.model_ref())

    def model_ref(self) -> str | None:
        return self.model.currentData()

    def apply_model_defaults(self, defaults) -> None:
        """A newly chosen model brings its own steps, guidance, size and sampler."""
        self._defaults = defaults
        self.steps.setValue(defaults.steps)
        self.guidance.setValue(defaults.guidance)
        self.scheduler.setCurrentText(defaults.scheduler or MODEL_DEFAULT)
        self.size_preset.setCurrentIndex(0)
        self._apply_size_preset(0)
        if not self.prompt.toPlainText().strip() and defaults.example_prompt:
            self.prompt.setPlainText(defaults.example_prompt)

    def _apply_size_preset(self, index: int) -> None:
        value = SIZE_PRESETS[index][1]
        custom = value == "custom"
        self.width_box.setEnabled(custom)
        self.height_box.setEnabled(custom)
        if value is None and self._defaults is not None:
            value = (self._defaults.width, self._defaults.height)
        if isinstance(value, tuple):
            self.width_box.setValue(value[0])
            self.height_box.setValue(value[1])

    # --- requests ----------------------------------------------------------------------------

    def to_request(self) -> GenerationRequest:
        """Raises InvalidRequest (a LatentStudioError) with a message for the user."""
        seed_text = self.seed.text().strip()
        # A new random seed each time unless "Keep" is ticked.
        seed = int(seed_text) if seed_text and self.lock_seed.isChecked() else None
        scheduler = self.scheduler.currentText()
        return GenerationRequest(
            prompt=self.prompt.toPlainText(), negative_prompt=self.negative.toPlainText(),
            steps=self._open_at_default("steps", self.steps.value()),
            guidance=self._open_at_default("guidance", round(self.guidance.value(), 2)),
            width=self.width_box.value(), height=self.height_box.value(), seed=seed,
            scheduler=None if scheduler == MODEL_DEFAULT else self._open_at_default("scheduler", scheduler),
            count=self.count.value(), model=self.model_ref())

    def _open_at_default(self, name: str, value):
        """A setting still at the chosen model's default is left open: the model that runs the job fills it
        (inpainting with the shipped model runs its sibling, at the sibling's own defaults)."""
        return None if self._defaults is not None and value == getattr(self._defaults, name) else value

    def uses_model_size(self) -> bool:
        """The size is the model's own (an edit then keeps its init image's size)."""
        return self.size_preset.currentIndex() == 0

    def load_request(self, req: GenerationRequest, keep_seed: bool = True) -> None:
        """Fill every field from a request (history, a dropped PNG, "reuse settings")."""
        self.prompt.setPlainText(req.prompt)
        self.negative.setPlainText(req.negative_prompt)
        if req.steps:
            self.steps.setValue(req.steps)
        if req.guidance is not None:
            self.guidance.setValue(req.guidance)
        if req.width and req.height:
            self.size_preset.setCurrentIndex(len(SIZE_PRESETS) - 1)
            self.width_box.setValue(req.width)
            self.height_box.setValue(req.height)
        # A sampler that did not map (another tool's) means the model's default, not the last choice.
        self.scheduler.setCurrentText(req.scheduler or MODEL_DEFAULT)
        if req.seed is not None:
            self.seed.setText(str(req.seed))
            self.lock_seed.setChecked(keep_seed)
        if req.model and self.model.findData(req.model) >= 0:
            self.model.setCurrentIndex(self.model.findData(req.model))

    def show_seed(self, seed: int) -> None:
        """After a job: the seed it used, so "Keep" can pin it."""
        if not self.lock_seed.isChecked():
            self.seed.setText(str(seed))

    def set_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)
        self.generate_button.setText("Add to queue" if busy else "Generate")


class PromptEditor(QPlainTextEdit):
    """A prompt box that speaks A1111's syntax: Ctrl+Up/Down change the weight of the selection (or
    the word at the cursor) in 0.1 steps, and brackets without a partner are underlined."""

    WEIGHT_STEP = 0.1

    def __init__(self):
        super().__init__()
        self._highlighter = _BracketHighlighter(self.document())
        self.textChanged.connect(self._explain_brackets)

    def keyPressEvent(self, event) -> None:
        up_down = {Qt.Key.Key_Up: self.WEIGHT_STEP, Qt.Key.Key_Down: -self.WEIGHT_STEP}
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier and event.key() in up_down:
            self.change_weight(up_down[event.key()])
            return
        super().keyPressEvent(event)

    def change_weight(self, delta: float) -> None:
        cursor = self.textCursor()
        start, end = sorted((cursor.anchor(), cursor.position()))
        text, start, end = adjust_weight(self.toPlainText(), start, end, delta)
        if text == self.toPlainText():
            return
        cursor.beginEditBlock()  # one undo step
        cursor.select(QTextCursor.SelectionType.Document)
        cursor.insertText(text)
        cursor.endEditBlock()
        cursor.setPosition(start)
        cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
        self.setTextCursor(cursor)

    def _explain_brackets(self) -> None:
        lonely = unbalanced_brackets(self.toPlainText())
        self.setToolTip(f"{len(lonely)} bracket(s) without a partner (underlined): the weight runs to the end "
                        "of the prompt, as in AUTOMATIC1111" if lonely else "")


class _BracketHighlighter(QSyntaxHighlighter):
    def highlightBlock(self, text: str) -> None:
        block = self.currentBlock()
        whole = block.document().toPlainText()
        mark = QTextCharFormat()
        mark.setUnderlineStyle(QTextCharFormat.UnderlineStyle.WaveUnderline)
        mark.setUnderlineColor(QColor("#e05555"))
        mark.setForeground(QColor("#d03030"))
        mark.setFontWeight(QFont.Weight.Bold)
        for position in unbalanced_brackets(whole):
            offset = position - block.position()
            if 0 <= offset < len(text):
                self.setFormat(offset, 1, mark)


def _editor(placeholder: str, min_height: int, max_height: int) -> QPlainTextEdit:
    editor = PromptEditor()
    editor.setPlaceholderText(placeholder)
    editor.setMinimumHeight(min_height)
    editor.setMaximumHeight(max_height)
    editor.setTabChangesFocus(True)
    return editor


def _spin(box, low, high, value, tip: str):
    box.setRange(low, high)
    box.setValue(value)
    box.setToolTip(tip)
    return box
