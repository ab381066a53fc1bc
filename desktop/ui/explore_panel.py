"""The Explore tab: the forward process on the user's own image, with the model's own VAE and schedule.

An image (from the gallery's Explore action, a drop, or Choose…) is encoded once into its latent x₀;
the latent's channels are shown; a slider over t shows x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε (one fixed ε)
decoded, beside a plot of ᾱ_t with t marked. All model work runs on the background helper: a
decode is started only when none is running, and the newest slider position wins.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (QFileDialog, QGridLayout, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout,
                               QWidget)

from desktop.ui.image_view import ImageView
from desktop.ui.qt_images import from_pil

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp)"
DEBOUNCE_MS = 60


def hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: #8a8f99;")
    return label


class AlphaPlot(QWidget):
    """ᾱ_t over t (how much of the image is left) and the share of noise, with the current t marked."""

    def __init__(self):
        super().__init__()
        self.alphas: list[float] = []
        self.visited: list[float] = []  # the timesteps the chosen sampler runs, marked on the curve
        self.t = 0
        self.setMinimumSize(260, 150)

    def set_schedule(self, alphas: list[float]) -> None:
        self.alphas = alphas
        self.update()

    def set_visited(self, timesteps: list[float]) -> None:
        self.visited = timesteps
        self.update()

    def set_t(self, t: int) -> None:
        self.t = t
        self.update()

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor(30, 30, 34))
        if not self.alphas:
            return
        left, top, right, bottom = 34, 10, self.width() - 10, self.height() - 22
        last = len(self.alphas) - 1

        def point(t: int, value: float) -> QPointF:
            return QPointF(left + (right - left) * t / last, bottom - (bottom - top) * value)

        painter.setPen(QColor(90, 90, 100))
        painter.drawLine(left, bottom, right, bottom)
        painter.drawLine(left, top, left, bottom)
        painter.drawText(4, top + 10, "1")
        painter.drawText(4, bottom, "0")
        painter.drawText(left, self.height() - 6, "t = 0")
        painter.drawText(right - 44, self.height() - 6, f"{last}")
        for values, colour, name in ((self.alphas, QColor(110, 170, 255), "ᾱ_t image left"),
                                     ([1 - a for a in self.alphas], QColor(235, 140, 90), "1 − ᾱ_t noise")):
            path = QPainterPath(point(0, values[0]))
            for t in range(1, len(values), max(1, len(values) // 200)):
                path.lineTo(point(t, values[t]))
            painter.setPen(QPen(colour, 2))
            painter.drawPath(path)
            legend = QPointF(left + 0.55 * (right - left), (top + bottom) / 2 - 6 + 16 * (colour.red() > 200))
            painter.drawText(legend, name)  # mid-right: between the two curves, clear of both
        painter.setPen(QPen(QColor(250, 210, 90), 1))
        painter.setBrush(QColor(250, 210, 90))
        for t in self.visited:
            painter.drawEllipse(point(round(t), self.alphas[min(round(t), last)]), 2.5, 2.5)
        marker = point(self.t, self.alphas[self.t])
        painter.setPen(QPen(QColor(240, 240, 240), 1, Qt.PenStyle.DashLine))
        painter.drawLine(QPointF(marker.x(), top), QPointF(marker.x(), bottom))
        painter.setBrush(QColor(240, 240, 240))
        painter.drawEllipse(marker, 4, 4)


class ExplorePanel(QWidget):
    error = Signal(str)
    frame_shown = Signal(int)  # the t of the frame now on screen (tests wait for it)

    def __init__(self, tasks, registry):
        """`registry`: a callable giving the current ModelRegistry (settings may change)."""
        super().__init__()
        self.tasks, self.registry = tasks, registry
        self.model_ref: str | None = None
        self._loaded: tuple | None = None  # (model path, ForwardProcess): one model's VAE kept, not every one tried
        self._subject = None  # (ForwardProcess, x0, noise) of the image on show
        self._epoch = 0  # bumped by each new image or model: older results are dropped
        self._busy, self._wanted = False, None
        self._path: Path | None = None
        self.shown_t: int | None = None

        self.choose = QPushButton("Choose image…")
        self.choose.clicked.connect(self._pick)
        self.new_noise = QPushButton("New noise")
        self.new_noise.setToolTip("Draw another ε: the same schedule, other noise")
        self.new_noise.clicked.connect(self._renoise)
        self.title = QLabel("Drop an image here, choose one, or pick Explore on a gallery image.")
        self.view = ImageView("The image, noised to step t, appears here.")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 999)
        self.slider.setEnabled(False)
        self.readout = QLabel("t = 0")
        self.readout.setMinimumWidth(330)
        self.channels = [QLabel() for _ in range(4)]
        self.latent_hint = hint("The latent: what the model denoises. The VAE packs the image into a few channels, "
                                "8× smaller on each side.")
        self.plot = AlphaPlot()
        self.sampling = ("", 0)  # the prompt panel's sampler and steps
        self._scheduler_config: dict | None = None
        self.steps_hint = hint("")
        self._debounce = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._debounce.timeout.connect(lambda: self._request(self.slider.value()))
        self.slider.valueChanged.connect(self._slid)
        self.setAcceptDrops(True)
        self._layout()

    def _layout(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.choose)
        top.addWidget(self.title, 1)
        top.addWidget(self.new_noise)
        grid = QGridLayout()
        for index, label in enumerate(self.channels):
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setMinimumSize(96, 96)
            grid.addWidget(label, index // 2, index % 2)
        side = QVBoxLayout()
        side.addWidget(QLabel("<b>Latent channels</b>"))
        side.addLayout(grid)
        side.addWidget(self.latent_hint)
        side.addSpacing(10)
        side.addWidget(QLabel("<b>Noise schedule</b>"))
        side.addWidget(self.plot)
        side.addWidget(self.steps_hint)
        side.addWidget(hint("ᾱ_t is how much of the image survives at step t; the rest is noise. Most of the "
                            "image is gone long before the last step, which is why generation starts from "
                            "pure noise."))
        side.addStretch(1)
        middle = QHBoxLayout()
        left = QVBoxLayout()
        left.addWidget(self.view, 1)
        left.addWidget(hint("The forward process: x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε with one fixed ε and this model's "
                            "own schedule, decoded by its VAE. At t = 0 it is the VAE's round trip; generation "
                            "runs this backwards, from noise to an image."))
        middle.addLayout(left, 3)
        middle.addLayout(side, 2)
        slider_row = QHBoxLayout()
        slider_row.addWidget(QLabel("t"))
        slider_row.addWidget(self.slider, 1)
        slider_row.addWidget(self.readout)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(middle, 1)
        layout.addLayout(slider_row)

    # --- what to explore ------------------------------------------------------------------------

    def set_model(self, ref: str | None) -> None:
        """The prompt panel's model; an image on show is encoded again with it."""
        if ref == self.model_ref:
            return
        self.model_ref = ref
        if self._path is not None:
            self.load_file(self._path)

    def load_file(self, path: Path) -> None:
        from desktop.engine import explain
        from desktop.engine.editing import open_image

        self._path, self._epoch, self._subject = Path(path), self._epoch + 1, None
        epoch, registry, ref = self._epoch, self.registry(), self.model_ref
        self.title.setText(f"{self._path.name}: encoding…")

        def work():
            info = registry.resolve(ref)
            loaded = self._loaded
            process = loaded[1] if loaded and loaded[0] == info.path else explain.ForwardProcess.load(info)
            self._loaded = (info.path, process)
            image = explain.model_input(open_image(self._path, "image"), _native(info))
            x0 = process.encode(image)
            return info, process, x0, image.size, model_scheduler_config(info)

        from desktop.engine.sampler_schedule import model_scheduler_config

        self.tasks.run(work, lambda result: self._encoded(epoch, *result), self._failed)

    def _encoded(self, epoch: int, info, process, x0, size, scheduler_config: dict) -> None:
        from desktop.engine import explain

        if epoch != self._epoch:
            return
        self._scheduler_config = scheduler_config
        self.set_sampling(*self.sampling)
        self._subject = (process, x0, process.noise_like(x0))
        channels, h, w = x0.shape[1:]
        scale = max(1, 96 // max(h, w))
        for label, picture in zip(self.channels, explain.latent_channels(x0, scale)):
            label.setPixmap(QPixmap.fromImage(from_pil(picture)).scaled(
                96, 96, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation))
        for label in self.channels[channels:]:
            label.clear()
        self.latent_hint.setText(
            f"The latent: what the model denoises. {info.name}'s VAE packs this {size[0]}×{size[1]} image into "
            f"{channels} channels of {w}×{h}: {size[0] // w}× smaller on each side, {size[0] * size[1] * 3 // (channels * h * w)}× "
            "fewer numbers.")
        self.title.setText(f"{self._path.name} · {info.name}")
        self.plot.set_schedule([float(a) for a in process.alphas_cumprod])
        self.slider.setRange(0, process.steps - 1)
        self.slider.setEnabled(True)
        self.shown_t = None
        self._request(self.slider.value())

    def set_sampling(self, sampler: str, steps: int) -> None:
        """Mark the timesteps this sampler visits at this many steps on the model's schedule ("" or an
        unknown name: the model's own sampler)."""
        from desktop.engine import schedulers
        from desktop.engine.sampler_schedule import visited

        self.sampling = (sampler, steps)
        config = self._scheduler_config
        if config is None or steps < 1:
            return
        name = sampler if sampler in schedulers.SCHEDULERS else schedulers.name_of_config(config)
        self.tasks.run(lambda: visited(name, steps, config), lambda v: self._show_visited(v, steps), self._failed)

    def _show_visited(self, found, steps: int) -> None:
        self.plot.set_visited(found.timesteps)
        self.steps_hint.setText(f"● where {found.label} steps at {steps} steps (the prompt panel's sampler): each "
                                "step removes the noise down to the next dot.")

    def _renoise(self) -> None:
        if self._subject is None:
            return
        import random

        process, x0, _ = self._subject
        self._subject = (process, x0, process.noise_like(x0, random.randrange(2**31)))
        self.shown_t = None
        self._request(self.slider.value())

    # --- the slider ------------------------------------------------------------------------------

    def _slid(self, t: int) -> None:
        self.plot.set_t(t)
        self._update_readout(t)
        self._debounce.start()

    def _update_readout(self, t: int) -> None:
        if self._subject is None:
            return
        a = self._subject[0].alpha_bar(t)
        self.readout.setText(f"t = {t}   ᾱ = {a:.3f}   image ×{a ** 0.5:.2f}, noise ×{(1 - a) ** 0.5:.2f}")

    def _request(self, t: int) -> None:
        """Decode x_t unless a decode is running; then the newest t waits for it."""
        if self._subject is None:
            return
        if self._busy:
            self._wanted = t
            return
        self._busy, self._wanted = True, None
        epoch, (process, x0, noise) = self._epoch, self._subject
        self.tasks.run(lambda: process.frame(x0, noise, t), lambda frame: self._show(epoch, frame), self._failed)

    def _show(self, epoch: int, frame) -> None:
        self._busy = False
        if epoch == self._epoch:
            self.view.set_image(from_pil(frame.image))
            self.shown_t = frame.t
            self._update_readout(frame.t)
            self.frame_shown.emit(frame.t)
        wanted = self._wanted if self._wanted is not None else self.slider.value()
        if epoch != self._epoch or wanted != frame.t:
            self._request(wanted)

    def _failed(self, message: str) -> None:
        self._busy = False
        self.title.setText("Could not explore this image.")
        self.error.emit(message)

    def _pick(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Explore an image", "", IMAGE_FILTER)
        if path:
            self.load_file(Path(path))

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.toLocalFile()]
        if files:
            self.load_file(Path(files[0]))
            event.acceptProposedAction()


def _native(info) -> int:
    from desktop.engine.models import read_defaults

    defaults = read_defaults(info.path) if info.path.is_dir() else None
    return max(defaults.width, defaults.height) if defaults else 512
