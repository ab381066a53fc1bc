"""The steps of the last job, kept for replay: scrub through the denoising after the picture is made.

Each step keeps two pictures: the model's prediction of the finished image (x̂₀) and the noisy latent
x_t it was working on. After the job the slider runs from step 1 to the final image; what it shows goes
to the preview through `picked`. "Save animation…" writes the steps and the image as a WebP or GIF.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from desktop.ui.qt_images import to_pil

VIEWS = ("Predicted image (x̂₀)", "Noisy latent (x_t)")


class StepTimeline(QWidget):
    picked = Signal(QImage)  # the frame to put in the preview
    error = Signal(str)
    saved = Signal(str)  # the animation's path

    def __init__(self, tasks):
        super().__init__()
        self.tasks = tasks
        self.frames: list[tuple[QImage, QImage]] = []  # (x̂₀, x_t) per step of the first image
        self.final = QImage()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.valueChanged.connect(self._scrubbed)
        self.label = QLabel()
        self.label.setMinimumWidth(110)
        self.view = QComboBox()
        self.view.addItems(VIEWS)
        self.view.setToolTip("x̂₀: what the model expects the finished image to be at this step. x_t: the noisy "
                             "latent it was denoising, shown through a cheap colour map.")
        self.view.currentIndexChanged.connect(lambda _i: self._scrubbed(self.slider.value()))
        self.save_button = QPushButton("Save animation…")
        self.save_button.clicked.connect(self._ask_where)
        row = QHBoxLayout()
        row.addWidget(QLabel("Replay"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.label)
        row.addWidget(self.view)
        row.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        self.hide()

    # --- fed by the window -------------------------------------------------------------------------

    def start(self) -> None:
        """A job begins: the last one's frames go."""
        self.frames, self.final = [], QImage()
        self.hide()

    def add(self, clean: QImage, noisy: QImage) -> None:
        self.frames.append((clean, noisy))

    def finish(self, image: QImage) -> None:
        """The job made its first image: the timeline opens at it."""
        self.final = image
        if not self.frames:
            return
        self.slider.blockSignals(True)
        self.slider.setRange(1, len(self.frames) + 1)
        self.slider.setValue(len(self.frames) + 1)
        self.slider.blockSignals(False)
        self._label(self.slider.value())
        self.show()

    # --- scrubbing -------------------------------------------------------------------------------------

    def frame(self, position: int) -> QImage:
        """Step `position` (1-based) in the chosen view, or the final image past the last step."""
        if position > len(self.frames):
            return self.final
        return self.frames[position - 1][self.view.currentIndex()]

    def _label(self, position: int) -> None:
        steps = len(self.frames)
        self.label.setText("Final image" if position > steps else f"Step {position}/{steps}")

    def _scrubbed(self, position: int) -> None:
        if not self.frames:
            return
        self._label(position)
        self.picked.emit(self.frame(position))

    # --- the animation ---------------------------------------------------------------------------------

    def _ask_where(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the denoising as", "denoising.webp",
                                              "Animated WebP (*.webp);;GIF (*.gif)")
        if path:
            self.save_animation(Path(path))

    def save_animation(self, path: Path) -> None:
        """Written on the background helper: the chosen view's steps, then the final image."""
        from desktop.engine.explain import save_animation

        pictures = [to_pil(self.frame(i)) for i in range(1, len(self.frames) + 2)]
        self.tasks.run(lambda: save_animation(pictures, path), lambda written: self.saved.emit(str(written)),
                       self.error.emit)
