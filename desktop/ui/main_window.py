"""The main window: prompt and settings on the left; the image forming, the queue and the gallery on the right."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (QFileDialog, QLabel, QMainWindow, QMessageBox, QProgressBar, QSplitter, QTabWidget,
                               QVBoxLayout, QWidget)

from desktop import APP_NAME, paths
from desktop.engine.request import SEED_LIMIT, GenerationRequest
from desktop.errors import LatentStudioError
from desktop.settings import Settings, load_settings, save_settings

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    job_done = Signal(int, str, list)  # job id, outcome (finished/failed/cancelled), saved paths (for tests, self-test)

    def __init__(self, settings: Settings | None = None):
        super().__init__()
        from desktop.gallery.jobs import JobQueue
        from desktop.gallery.store import open_gallery
        from desktop.ui.gallery_view import GalleryBrowser
        from desktop.ui.history_panel import HistoryPanel
        from desktop.ui.image_actions import ImageActions
        from desktop.ui.image_view import ImageView
        from desktop.ui.prompt_panel import PromptPanel
        from desktop.ui.queue_panel import QueuePanel
        from desktop.ui.worker import WorkerThread

        self.settings = settings or load_settings()
        self.gallery = open_gallery(self.settings)
        self.queue = JobQueue(self.gallery)
        self.current_job: int | None = None
        self._closing = False
        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)

        self.prompt_panel = PromptPanel()
        self.history = HistoryPanel(self.gallery)
        self.preview = ImageView()
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("Ready")
        self.progress.setValue(0)
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background: #5c1f1f; color: #ffdede; padding: 8px; border-radius: 4px;")
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.hide()
        self.queue_panel = QueuePanel()
        self.browser = GalleryBrowser(self.gallery)
        self.actions = ImageActions(self.gallery, self)
        self.tabs = QTabWidget()
        self._build_layout()
        self._build_menu()
        self._connect()

        self.worker = WorkerThread(lambda: self.settings, self)
        w = self.worker.worker
        w.started.connect(self._job_started)
        w.progress.connect(self._job_progress)
        w.finished.connect(self._job_finished)
        w.failed.connect(self._job_failed)
        w.cancelled.connect(self._job_cancelled)

        self._load_models()
        self._restore()
        self._refresh_queue()
        QTimer.singleShot(0, self._start_next)  # jobs left from the last run (or a crash) resume
        if self.gallery.last_reconcile.added:
            self.statusBar().showMessage(f"{self.gallery.last_reconcile.added} image(s) found since last time "
                                         "were added to the gallery.", 8000)

    # --- building ----------------------------------------------------------------------------

    def _build_layout(self) -> None:
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.prompt_panel)
        history_box = QWidget()
        box = QVBoxLayout(history_box)
        box.setContentsMargins(8, 6, 4, 8)
        box.addWidget(QLabel("<b>Prompt history</b>"))
        box.addWidget(self.history)
        left.addWidget(history_box)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 1)
        create = QWidget()
        layout = QVBoxLayout(create)
        layout.addWidget(self.banner)
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.queue_panel)
        self.tabs.addTab(create, "Create")
        self.tabs.addTab(self.browser, "Gallery")
        main = QSplitter()
        main.addWidget(left)
        main.addWidget(self.tabs)
        main.setStretchFactor(0, 0)
        main.setStretchFactor(1, 1)
        main.setSizes([380, 900])
        left.setMinimumWidth(320)
        self.setCentralWidget(main)
        self.resize(1320, 860)

    def _build_menu(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        for text, slot, key in [("Import folder of images…", self._import_folder, None),
                                ("Rescan gallery", self._rescan, None),
                                ("Settings…", self._open_settings, QKeySequence.StandardKey.Preferences),
                                ("Quit", self.close, QKeySequence.StandardKey.Quit)]:
            action = QAction(text, self)
            action.triggered.connect(slot)
            if key is not None:
                action.setShortcut(key)
            file_menu.addAction(action)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("About", lambda: QMessageBox.about(
            self, APP_NAME, f"<b>{APP_NAME}</b><br>Offline text-to-image. Your images stay on this computer:<br>"
                            f"{self.gallery.root}"))

    def _connect(self) -> None:
        panel = self.prompt_panel
        panel.generate_requested.connect(self.generate)
        panel.cancel_requested.connect(self.cancel)
        panel.model_changed.connect(self._model_changed)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, self.generate)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.cancel)
        self.history.chosen.connect(self._load_request)
        self.queue_panel.cancel_jobs.connect(self.cancel_jobs)
        self.queue_panel.moved.connect(lambda job_id, index: (self.queue.move(job_id, index), self._refresh_queue()))
        self.browser.open_record.connect(self._open_detail)
        self.browser.context_menu.connect(lambda records, pos: self.actions.menu(records, self).exec(pos))
        self.actions.reuse.connect(self._load_request)
        self.actions.changed.connect(self.browser.reload)
        self.actions.error.connect(self.show_error)

    # --- models ------------------------------------------------------------------------------

    def _registry(self):
        from desktop.engine.models import ModelRegistry

        return ModelRegistry(extra_folders=[Path(f) for f in self.settings.model_folders])

    def _load_models(self) -> None:
        try:
            models = self._registry().list()
        except LatentStudioError as exc:
            models = []
            self.show_error(str(exc))
        self.prompt_panel.set_models(models, self.settings.model)
        self.prompt_panel.generate_button.setEnabled(bool(models))
        if not models:
            self.preview.message = (
                "No model is installed.\n\nCopy a Stable Diffusion model in diffusers format into\n"
                f"{paths.user_models_dir()}\nor add a folder of models in File → Settings, then restart.")
        else:
            self.preview.message = "Write a prompt and press Generate (Ctrl+Enter).\nThe picture forms here, step by step."
        self.preview.update()

    def _model_changed(self, ref: str) -> None:
        from desktop.engine.models import read_defaults

        try:
            info = self._registry().resolve(ref)
            self.prompt_panel.apply_model_defaults(read_defaults(info.path))
        except LatentStudioError as exc:
            self.show_error(str(exc))

    # --- jobs --------------------------------------------------------------------------------

    def generate(self) -> None:
        """Queue a job from the prompt panel; it starts at once when nothing else runs."""
        if not self.prompt_panel.generate_button.isEnabled():
            return
        try:
            request = self.prompt_panel.to_request()
            if request.seed is None:  # fixed now, so a queued or resumed job makes the same picture
                request = request.replace(seed=secrets.randbelow(SEED_LIMIT))
            self.queue.add(request)
            self.gallery.record_prompt(request)
        except LatentStudioError as exc:
            self.show_error(str(exc))
            return
        self.history.reload()
        self._refresh_queue()
        self._start_next()

    def _start_next(self) -> None:
        if self.current_job is not None or self._closing:
            return
        job = self.queue.start_next()
        self._refresh_queue()
        if job is None:
            self.prompt_panel.set_busy(False)
            return
        self.current_job = job.id
        self.prompt_panel.set_busy(True)
        self.banner.hide()
        self.progress.setRange(0, 0)  # busy until the first step reports
        self.progress.setFormat("Starting…")
        self.worker.submit.emit(job.id, job.request.to_dict())

    def cancel(self) -> None:
        if self.current_job is not None:
            self.progress.setFormat("Cancelling…")
            self.worker.cancel()

    def cancel_jobs(self, job_ids: list) -> None:
        for job_id in job_ids:
            if job_id == self.current_job:
                self.cancel()
            else:
                self.queue.done(job_id)
        self._refresh_queue()

    def _refresh_queue(self) -> None:
        self.queue_panel.show_jobs(self.queue.jobs())

    def _job_started(self, job_id: int, text: str) -> None:
        self.progress.setFormat(text)

    def _job_progress(self, job_id: int, step: int, total: int, seconds_left: float, image: QImage) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(step)
        self.progress.setFormat(f"Step {step}/{total} · {seconds_left:.0f} s left")
        if not image.isNull():
            self.preview.set_image(image, smooth=True)

    def _job_finished(self, job_id: int, saved: list, facts: dict) -> None:
        if self._closing:
            return
        self._end_job(job_id)
        self.preview.set_image(QImage(saved[-1]))
        self.prompt_panel.show_seed(facts["seeds"][0])
        seconds = facts["timings"].get("total", 0.0)
        self.progress.setFormat(f"Done: {len(saved)} image{'s' if len(saved) > 1 else ''} in {seconds:.1f} s")
        for warning in facts.get("warnings", []):
            self.statusBar().showMessage(warning, 15000)
        self.browser.reload()
        self.job_done.emit(job_id, "finished", saved)
        self._start_next()

    def _job_failed(self, job_id: int, message: str) -> None:
        if self._closing:
            return
        self._end_job(job_id)
        self.progress.setFormat("Failed")
        self.show_error(message)
        self.job_done.emit(job_id, "failed", [])
        self._start_next()

    def _job_cancelled(self, job_id: int) -> None:
        if self._closing:
            return
        self._end_job(job_id)
        self.progress.setFormat("Cancelled")
        self.job_done.emit(job_id, "cancelled", [])
        self._start_next()

    def _end_job(self, job_id: int) -> None:
        if self._closing:  # a job cut short by quitting stays queued and resumes next time
            return
        self.queue.done(job_id)
        self.current_job = None
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._refresh_queue()

    def show_error(self, message: str) -> None:
        self.banner.setText(message)
        self.banner.show()
        self.statusBar().showMessage(message.splitlines()[0], 10000)

    # --- gallery, history, drops ---------------------------------------------------------------

    def _load_request(self, request: GenerationRequest) -> None:
        self.prompt_panel.load_request(request)
        self.tabs.setCurrentIndex(0)

    def _open_detail(self, record) -> None:
        from desktop.ui.detail_view import DetailDialog

        DetailDialog(record, self.actions, self).exec()

    def dragEnterEvent(self, event) -> None:
        if any(u.toLocalFile().lower().endswith(".png") for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.toLocalFile().lower().endswith(".png")]
        if files:
            self.load_settings_from_png(Path(files[0]))
            event.acceptProposedAction()

    def load_settings_from_png(self, path: Path) -> None:
        """Settings from any tool's PNG (A1111, ComfyUI, InvokeAI, this app) into the prompt panel."""
        from desktop.gallery.metadata import read_metadata
        from desktop.gallery.pngchunks import UnreadablePNG, read_png_info

        try:
            meta = read_metadata(read_png_info(path).text)
        except (UnreadablePNG, OSError) as exc:
            self.show_error(f"Cannot read {path.name}: {exc}.")
            return
        if meta.source == "none":
            self.show_error(f"{path.name} carries no generation settings (it was saved without metadata).")
            return
        self._load_request(meta.request())
        self.statusBar().showMessage(f"Settings loaded from {path.name} ({meta.source}).", 8000)

    def _import_folder(self) -> None:
        from desktop.gallery import scan

        folder = QFileDialog.getExistingDirectory(self, "Import a folder of PNG images")
        if folder:
            self._scan_in_background(lambda gallery: scan.import_folder(gallery, Path(folder)), "Importing…")

    def _rescan(self) -> None:
        from desktop.gallery import scan

        self._scan_in_background(scan.rescan, "Rescanning the gallery…")

    def _scan_in_background(self, operation, message: str) -> None:
        """Reads every file, so it runs on a pool thread with its own database connection."""
        from desktop.gallery.store import Gallery
        from desktop.ui.background import run_in_background

        root = self.gallery.root

        def work():
            with Gallery(root, reconcile=False) as gallery:
                return operation(gallery)

        self.statusBar().showMessage(message)
        run_in_background(work, self._scan_done, self.show_error)

    def _scan_done(self, report) -> None:
        self.browser.reload()
        self.history.reload()
        self.statusBar().showMessage(report.summary().splitlines()[0], 10000)

    # --- settings and lifetime ---------------------------------------------------------------

    def _open_settings(self) -> None:
        from desktop.gallery.store import gallery_root, open_gallery
        from desktop.ui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, str(paths.default_gallery_dir()), self)
        if not dialog.exec():
            return
        new = dialog.result_settings()
        try:
            save_settings(new)
            if gallery_root(new) != self.gallery.root:
                gallery = open_gallery(new)
                self._switch_gallery(gallery)
        except LatentStudioError as exc:
            self.show_error(str(exc))
            return
        self.settings = new
        self._load_models()

    def _switch_gallery(self, gallery) -> None:
        from desktop.gallery.jobs import JobQueue

        old, self.gallery = self.gallery, gallery
        self.queue = JobQueue(gallery)
        self.history.gallery = self.actions.gallery = gallery
        self.browser.set_gallery(gallery)
        self.history.reload()
        self._refresh_queue()
        if self.current_job is None:
            old.close()

    def _restore(self) -> None:
        if self.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode()))
        if self.settings.last_request:
            try:
                self.prompt_panel.load_request(GenerationRequest.from_dict(self.settings.last_request), keep_seed=False)
            except (LatentStudioError, TypeError):
                pass

    def closeEvent(self, event) -> None:
        try:
            request = self.prompt_panel.to_request().to_dict()
        except LatentStudioError:
            request = self.settings.last_request
        self.settings.window_geometry = bytes(self.saveGeometry().toBase64()).decode()
        self.settings.last_request = request
        self.settings.model = self.prompt_panel.model_ref()
        try:
            save_settings(self.settings)
        except (LatentStudioError, OSError) as exc:
            log.warning("could not save settings: %s", exc)
        self._closing = True
        self.worker.stop()  # a running job is cancelled; it stays queued and resumes next time
        self.gallery.close()
        super().closeEvent(event)
