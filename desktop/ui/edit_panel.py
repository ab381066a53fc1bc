"""Editing an image from the window: the init-image slot, strength with a preview of where the model
starts, the mask tools (the mask itself is painted on the canvas) and outpainting.

The panel holds pictures, not files: an image dropped, pasted or picked from the gallery is kept in
the gallery's inputs when the job is queued (service.keep_edit_images), like the CLI does.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication, QImage, QPixmap
from PySide6.QtWidgets import (QCheckBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton,
                               QSlider, QSpinBox, QVBoxLayout, QWidget)

from desktop.engine import editing
from desktop.engine.request import DEFAULT_STRENGTH, MAX_MASK_BLUR, MAX_MASK_PADDING, Edit
from desktop.ui.mask_canvas import MaskCanvas
from desktop.ui.qt_images import from_pil, to_pil

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
KIND_NAMES = {"img2img": "Image to image", "inpaint": "Inpainting: repaints the masked area",
              "outpaint": "Outpainting: extends the canvas"}
THUMB = 112


class EditPanel(QGroupBox):
    changed = Signal()  # the init image, mask or kind changed
    error = Signal(str)
    show_canvas = Signal()

    def __init__(self, tasks, steps_box, parent=None):
        super().__init__("Edit an image", parent)
        self.tasks = tasks
        self.steps_box = steps_box  # the prompt panel's steps: the strength preview depends on them
        self.init = None  # PIL RGB
        self.source: Path | None = None  # the file it came from, for lineage
        self._strength_touched = False
        self.canvas = MaskCanvas()
        self.canvas.mask_changed.connect(self._refresh)
        self.setAcceptDrops(True)
        steps_box.valueChanged.connect(self._refresh)
        self._build()
        self._refresh()

    # --- building ------------------------------------------------------------------------------

    def _build(self) -> None:
        self.thumb = QLabel("Drop an image here, paste one,\nor choose Edit on a gallery image.")
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setMinimumSize(THUMB, THUMB)
        self.thumb.setStyleSheet("border: 1px dashed #889; color: #99a;")
        self.noised = QLabel()
        self.noised.setFixedSize(THUMB, THUMB)
        self.noised.setToolTip("What the model starts from at this strength (the noise shown in pixels)")
        slots = QHBoxLayout()
        slots.addWidget(self.thumb, 1)
        slots.addWidget(self.noised)
        choose, paste, self.clear_button = QPushButton("Choose…"), QPushButton("Paste"), QPushButton("Clear")
        choose.clicked.connect(self._choose)
        paste.clicked.connect(self.paste)
        self.clear_button.clicked.connect(self.clear)
        self.canvas_button = QPushButton("Show on canvas")
        self.canvas_button.setToolTip("Show the image on the canvas to paint the mask")
        self.canvas_button.clicked.connect(self.show_canvas)
        file_row = QHBoxLayout()
        for button in (choose, paste, self.clear_button, self.canvas_button):
            file_row.addWidget(button)

        self.strength = QSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(1, 100)
        self.strength.setValue(round(DEFAULT_STRENGTH["img2img"] * 100))
        self.strength.valueChanged.connect(self._strength_moved)
        self.strength_label = QLabel()
        self.start_label = QLabel()
        self.start_label.setStyleSheet("color: #99a;")
        strength_row = QHBoxLayout()
        strength_row.addWidget(self.strength, 1)
        strength_row.addWidget(self.strength_label)

        self.brush = _spin(2, 256, 24, "Brush size in pixels of the image")
        self.brush.valueChanged.connect(lambda v: setattr(self.canvas, "brush", v))
        self.erase = QPushButton("Erase")
        self.erase.setCheckable(True)
        self.erase.setToolTip("Erase instead of paint (the right mouse button always erases)")
        self.erase.toggled.connect(lambda on: setattr(self.canvas, "erasing", on))
        clear_mask, invert = QPushButton("Clear mask"), QPushButton("Invert")
        clear_mask.clicked.connect(self.canvas.clear)
        invert.clicked.connect(self.canvas.invert)
        self.show_mask = QCheckBox("Show")
        self.show_mask.setChecked(True)
        self.show_mask.toggled.connect(self._toggle_mask)
        mask_row = QHBoxLayout()
        for widget in (self.brush, self.erase, clear_mask, invert, self.show_mask):
            mask_row.addWidget(widget)
        self.mask_blur = _spin(0, MAX_MASK_BLUR, 4, "Soft edge of the mask, in pixels")
        self.only_masked = QCheckBox("Only masked")
        self.only_masked.setToolTip("Work on the masked area at the model's size, then paste it back "
                                    "(more detail for small areas)")
        self.padding = _spin(0, MAX_MASK_PADDING, 32, "Context around the mask with Only masked, in pixels")
        blur_row = QHBoxLayout()
        for widget in (QLabel("Blur"), self.mask_blur, self.only_masked, QLabel("Padding"), self.padding):
            blur_row.addWidget(widget)
        self.sides = [_spin(0, 1024, 0, f"Pixels to add on the {name} (multiples of 8)", step=8)
                      for name in ("left", "top", "right", "bottom")]
        outpaint_row = QHBoxLayout()
        for label, box in zip("LTRB", self.sides):
            box.valueChanged.connect(self._refresh)
            outpaint_row.addWidget(QLabel(label))
            outpaint_row.addWidget(box)
        self.kind_label = QLabel()

        form = QFormLayout()
        form.addRow("Strength", strength_row)
        form.addRow("", self.start_label)
        form.addRow("Mask", mask_row)
        form.addRow("", blur_row)
        form.addRow("Outpaint", outpaint_row)
        self.controls = QWidget()
        self.controls.setLayout(form)
        layout = QVBoxLayout(self)
        layout.addLayout(slots)
        layout.addLayout(file_row)
        layout.addWidget(self.kind_label)
        layout.addWidget(self.controls)

    # --- the init image ------------------------------------------------------------------------

    def set_init(self, image, source: Path | None = None, mask=None) -> None:
        from desktop.gallery.inputs import normalised

        self.init = normalised(image)
        self.source = source
        self.canvas.set_image(from_pil(self.init))
        if mask is not None:
            self.canvas.set_mask(from_pil(mask.convert("L")))
        self.thumb.setPixmap(QPixmap.fromImage(from_pil(self.init)).scaled(
            THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))
        self._refresh()
        self.show_canvas.emit()

    def load_file(self, path: Path) -> None:
        """Read an image file off the GUI thread (a huge or broken file must not freeze the window)."""
        self.tasks.run(lambda: editing.open_image(path), lambda image: self.set_init(image, path), self.error.emit)

    def paste(self) -> None:
        image = QGuiApplication.clipboard().image()
        if image.isNull():
            self.error.emit("The clipboard holds no image to edit.")
            return
        self.set_init(to_pil(image))

    def clear(self) -> None:
        self.init, self.source = None, None
        self.canvas.set_image(QImage())
        self.thumb.clear()
        self.thumb.setText("Drop an image here, paste one,\nor choose Edit on a gallery image.")
        for box in self.sides:
            box.setValue(0)
        self._strength_touched = False
        self._refresh()

    def _choose(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Choose an image to edit", "",
                                              "Images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ")")
        if name:
            self.load_file(Path(name))

    def dragEnterEvent(self, event) -> None:
        if _image_files(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        files = _image_files(event.mimeData())
        if files:
            self.load_file(files[0])
            event.acceptProposedAction()

    # --- what the job gets ---------------------------------------------------------------------

    def kind(self) -> str | None:
        if self.init is None:
            return None
        if any(box.value() for box in self.sides):
            return "outpaint"
        return "inpaint" if self.canvas.has_mask() else "img2img"

    def edit_arguments(self) -> dict | None:
        """The arguments of service.keep_edit_images, or None when no image is being edited."""
        kind = self.kind()
        if kind is None:
            return None
        arguments = {"init": self.init, "source": self.source, "strength": self.strength.value() / 100,
                     "mask_blur": self.mask_blur.value()}
        if kind == "inpaint":
            arguments.update(mask=to_pil(self.canvas.mask), only_masked=self.only_masked.isChecked(),
                             mask_padding=self.padding.value())
        if kind == "outpaint":
            arguments["outpaint"] = tuple(box.value() for box in self.sides)
        return arguments

    def load_edit(self, edit: Edit | None, gallery) -> None:
        """Restore an edit exactly ("reuse settings"): its pictures come back from the gallery's inputs."""
        if edit is None:
            self.clear()
            return
        self.set_init(gallery.inputs.get(edit.init_image), mask=gallery.inputs.get(edit.mask) if edit.mask else None)
        self.strength.setValue(round(edit.resolved_strength() * 100))
        self._strength_touched = True
        self.mask_blur.setValue(edit.mask_blur)
        self.only_masked.setChecked(edit.only_masked)
        self.padding.setValue(edit.mask_padding)
        for box, value in zip(self.sides, edit.outpaint or (0, 0, 0, 0)):
            box.setValue(value)

    # --- feedback ------------------------------------------------------------------------------

    def _strength_moved(self, _value: int) -> None:
        self._strength_touched = True
        self._refresh()

    def _toggle_mask(self, on: bool) -> None:
        self.canvas.show_mask = on
        self.canvas.update()

    def _refresh(self) -> None:
        kind = self.kind()
        if kind is not None and not self._strength_touched:
            self.strength.blockSignals(True)
            self.strength.setValue(round(DEFAULT_STRENGTH[kind] * 100))
            self.strength.blockSignals(False)
        self.controls.setEnabled(kind is not None)
        for button in (self.clear_button, self.canvas_button):
            button.setEnabled(kind is not None)
        self.kind_label.setText(KIND_NAMES.get(kind, "Text to image (no image to edit)"))
        self.canvas.margins = tuple(box.value() for box in self.sides)
        self.canvas.update()
        strength = self.strength.value() / 100
        self.strength_label.setText(f"{strength:.2f}")
        steps = self.steps_box.value()
        t, alpha_bar = editing.start_noise(steps, strength)
        runs = editing.denoising_steps(steps, strength)
        self.start_label.setText(f"runs {runs} of {steps} steps, from t = {t} (ᾱ = {alpha_bar:.3f})")
        if self.init is None:
            self.noised.clear()
            return
        small = self.init.copy()
        small.thumbnail((THUMB, THUMB))
        self.noised.setPixmap(QPixmap.fromImage(from_pil(editing.noised_preview(small, alpha_bar))))
        self.changed.emit()


def _spin(low: int, high: int, value: int, tip: str, step: int = 1) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setSingleStep(step)
    box.setToolTip(tip)
    return box


def _image_files(mime) -> list[Path]:
    return [Path(u.toLocalFile()) for u in mime.urls() if u.toLocalFile().lower().endswith(IMAGE_SUFFIXES)]
