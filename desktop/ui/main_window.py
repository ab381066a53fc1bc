"""The main window: prompt and settings on the left; the image forming, the queue and the gallery on the right."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (QFileDialog, QLabel, QMainWindow, QMessageBox, QProgressBar, QSplitter, QStackedWidget, QTabWidget,
                               QVBoxLayout, QWidget)

from desktop import APP_NAME, paths
from desktop.engine.request import GenerationRequest
from desktop.errors import LatentStudioError
from desktop.settings import Settings, load_settings, save_settings
from desktop.ui.qt_images import from_pil
from desktop.ui.worker import JobDone, StepProgress, WorkItem

log = logging.getLogger(__name__)


@dataclass
class ActiveJob:
    """The job the worker has: its queue (and so its gallery) is the one it started in."""

    item: WorkItem
    queue: object  # JobQueue
    loading: bool = True  # no step reported yet


ERROR_STYLE = "background: #5c1f1f; color: #ffdede; padding: 8px; border-radius: 4px;"
NOTE_STYLE = "background: #3a3f4b; color: #e8ecf4; padding: 8px; border-radius: 4px;"


class MainWindow(QMainWindow):
    job_done = Signal(int, str, list)  # job id, outcome (finished/failed/cancelled), saved paths (for tests, self-test)
    settings_loaded = Signal(str)  # a PNG's settings reached the prompt panel (file name)

    def __init__(self, settings: Settings | None = None):
        super().__init__()
        from desktop.gallery.jobs import JobQueue
        from desktop.gallery.store import open_gallery
        from desktop.ui.gallery_view import GalleryBrowser
        from desktop.ui.history_panel import HistoryPanel
        from desktop.ui.image_actions import ImageActions
        from desktop.ui.image_view import ImageView
        from desktop.ui.edit_panel import EditPanel
        from desktop.ui.explore_panel import ExplorePanel
        from desktop.ui.step_timeline import StepTimeline
        from desktop.ui.network_browser import NetworkBrowser
        from desktop.ui.prompt_panel import PromptPanel
        from desktop.ui.background import BackgroundTasks
        from desktop.ui.instance import InstanceLock
        from desktop.ui.queue_panel import QueuePanel
        from desktop.ui.worker import WorkerThread

        self.settings = settings or load_settings()
        self.gallery = open_gallery(self.settings)
        self.instance = InstanceLock()
        self.queue = JobQueue(self.gallery, self.instance.id, InstanceLock.alive)
        self.active: ActiveJob | None = None
        self._closing = False
        self.tasks = BackgroundTasks(self)
        self.setWindowTitle(APP_NAME)
        self.setAcceptDrops(True)

        self.prompt_panel = PromptPanel()
        self.edit_panel = EditPanel(self.tasks, self.prompt_panel.steps)
        self.networks = NetworkBrowser(self.tasks, lambda: self.settings)
        self.history = HistoryPanel(self.gallery)
        self.preview = ImageView()
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("Ready")
        self.progress.setValue(0)
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.hide()
        self.queue_panel = QueuePanel()
        self.timeline = StepTimeline(self.tasks)
        self.explore = ExplorePanel(self.tasks, self._registry)
        self.browser = GalleryBrowser(self.gallery, self.tasks)
        self.actions = ImageActions(self.gallery, self.tasks, self)
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

        self._previous_hook = sys.excepthook
        sys.excepthook = self._unexpected  # exceptions in slots reach the banner and the log file

        self._load_models()
        self.networks.reload()
        self._restore()
        self._refresh_queue()
        self._report_set_aside()
        QTimer.singleShot(0, self._start_next)  # jobs left from the last run (or a crash) resume
        if self.gallery.last_reconcile.added:
            self.statusBar().showMessage(f"{self.gallery.last_reconcile.added} image(s) found since last time "
                                         "were added to the gallery.", 8000)

    # --- building ----------------------------------------------------------------------------

    def _build_layout(self) -> None:
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.prompt_panel)
        left.addWidget(self.edit_panel)
        history_box = QTabWidget()  # the prompt history, and the LoRAs and embeddings to insert
        history_box.addTab(self.history, "Prompt history")
        history_box.addTab(self.networks, "LoRAs && embeddings")
        history_box.setContentsMargins(8, 6, 4, 8)
        left.addWidget(history_box)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(2, 1)
        self.stage = QStackedWidget()  # the live preview and results, or the image being edited
        self.stage.addWidget(self.preview)
        self.stage.addWidget(self.edit_panel.canvas)
        create = QWidget()
        layout = QVBoxLayout(create)
        layout.addWidget(self.banner)
        layout.addWidget(self.stage, 1)
        layout.addWidget(self.timeline)
        layout.addWidget(self.progress)
        layout.addWidget(self.queue_panel)
        self.tabs.addTab(create, "Create")
        self.tabs.addTab(self.browser, "Gallery")
        self.tabs.addTab(self.explore, "Explore")
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
        panel.plot_requested.connect(self.open_plot_dialog)
        panel.model_changed.connect(self._model_changed)
        panel.model_changed.connect(self.explore.set_model)
        sampling = lambda *_: self.explore.set_sampling(panel.scheduler.currentText(), panel.steps.value())  # noqa: E731
        panel.scheduler.currentTextChanged.connect(sampling)
        panel.steps.valueChanged.connect(sampling)
        sampling()
        self.explore.error.connect(self.show_error)
        self.timeline.picked.connect(lambda image: (self.stage.setCurrentWidget(self.preview), self.preview.set_image(image)))
        self.timeline.error.connect(self.show_error)
        self.timeline.saved.connect(lambda path: self.statusBar().showMessage(f"Saved the animation to {path}", 8000))
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            QShortcut(QKeySequence(keys), self, self.generate)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.cancel)
        self.history.chosen.connect(self._load_request)
        self.history.failed.connect(self.show_error)
        self.queue_panel.cancel_jobs.connect(self.cancel_jobs)
        self.queue_panel.moved.connect(lambda job_id, index: (self.queue.move(job_id, index), self._refresh_queue()))
        self.browser.open_record.connect(self._open_detail)
        self.browser.context_menu.connect(lambda records, pos: self.actions.menu(records, self).exec(pos))
        self.actions.reuse.connect(lambda record: self.load_settings_from_png(record.path, record.metadata()))
        self.actions.edit.connect(self.edit_image)
        self.actions.explore.connect(self.explore_image)
        self.actions.upscale.connect(self.upscale_image)
        self.actions.open_record.connect(self._open_detail)
        self.edit_panel.error.connect(self.show_error)
        self.networks.insert.connect(self._insert_in_prompt)
        self.networks.error.connect(self.show_error)
        self.edit_panel.show_canvas.connect(lambda: self.stage.setCurrentWidget(self.edit_panel.canvas))
        self.actions.changed.connect(self.browser.images_changed)
        self.actions.removed.connect(self.browser.images_removed)
        self.actions.error.connect(self.show_error)
        self.actions.status.connect(lambda text: self.statusBar().showMessage(text, 8000))

    # --- models ------------------------------------------------------------------------------

    def _registry(self):
        from desktop.service import model_registry

        return model_registry(self.settings)

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
        from desktop.engine.models import cross_attention_width, read_defaults

        try:
            info = self._registry().resolve(ref)
            self.prompt_panel.apply_model_defaults(read_defaults(info.path))
            self.networks.set_model(cross_attention_width(info), f"{info.name} ({info.kind})")
        except LatentStudioError as exc:
            self.show_error(str(exc))

    # --- jobs --------------------------------------------------------------------------------

    def generate(self) -> None:
        """Queue a job from the prompt panel; it starts at once when nothing else runs."""
        if not self.prompt_panel.generate_button.isEnabled():
            return
        try:  # the seed is fixed now, so a queued or resumed job makes the same picture
            self.enqueue(self._request_from_panels())
        except LatentStudioError as exc:
            self.show_error(str(exc))

    def open_plot_dialog(self):
        """The X/Y/Z plot dialog over the panels' request; queued as one job when accepted."""
        from desktop.engine.request import Edit
        from desktop.ui.grid_dialog import GridDialog

        try:
            base = self.prompt_panel.to_request()
            if self.edit_panel.edit_arguments() is not None:  # the strength axis needs an image
                base = base.replace(edit=Edit("0" * 64))
        except LatentStudioError as exc:
            self.show_error(str(exc))
            return None
        dialog = GridDialog(base, self)
        dialog.accepted.connect(lambda: self._queue_plot(dialog.record()))
        dialog.open()
        return dialog

    def _queue_plot(self, axes: dict) -> None:
        try:
            self.enqueue(self._request_from_panels().replace(count=1), axes)
        except LatentStudioError as exc:
            self.show_error(str(exc))

    def enqueue(self, request: GenerationRequest, grid: dict | None = None) -> None:
        """Accept a request (validated, seed fixed, history recorded), queue it and start it when idle;
        `grid`: the axes of an X/Y/Z plot over it (engine/grid.py axes_record)."""
        from desktop.service import accept

        self.queue.add(accept(request, self.gallery), grid)
        self.history.reload()
        self._refresh_queue()
        self._start_next()

    def _request_from_panels(self) -> GenerationRequest:
        """The prompt panel's request, with the edit panel's image kept in the gallery when one is set."""
        from desktop.service import keep_edit_images

        request = self.prompt_panel.to_request()
        arguments = self.edit_panel.edit_arguments()
        if arguments is None:
            return request
        if self.prompt_panel.uses_model_size():
            request = request.replace(width=None, height=None)  # the init image's own size
        return request.replace(edit=keep_edit_images(self.gallery, **arguments))

    def edit_image(self, record) -> None:
        self.edit_panel.load_file(record.path)
        self.tabs.setCurrentIndex(0)

    def explore_image(self, record) -> None:
        panel = self.prompt_panel
        self.explore.set_model(panel.model_ref())
        self.explore.load_file(record.path)
        self.tabs.setCurrentWidget(self.explore)

    def upscale_image(self, record, factor: float = 2.0) -> None:
        """Queue an upscale of a gallery image with its own settings (its model when installed)."""
        from desktop.engine.editing import open_image
        from desktop.service import keep_edit_images

        def queue(image) -> None:
            request, _ = record.request.keep_valid()
            model = request.model if request.model and self._has_model(request.model) else None
            try:
                edit = keep_edit_images(self.gallery, image, source=record.path, upscale=factor)
                self.enqueue(request.replace(model=model, edit=edit))  # its own seed, as the CLI does
            except LatentStudioError as exc:
                self.show_error(str(exc))

        self.tasks.run(lambda: open_image(record.path, "image"), queue, self.show_error)

    def _has_model(self, ref: str) -> bool:
        try:
            self._registry().resolve(ref)
            return True
        except LatentStudioError:
            return False

    def _start_next(self) -> None:
        if self.active is not None or self._closing:
            return
        try:
            job = self.queue.claim_next()
        except LatentStudioError as exc:
            self.show_error(str(exc))
            job = None
        self._refresh_queue()
        if job is None:
            self.prompt_panel.set_busy(False)
            return
        item = WorkItem(job.id, job.request, self.gallery.root, grid=job.grid)
        self.active = ActiveJob(item, self.queue)
        self.prompt_panel.set_busy(True)
        self.stage.setCurrentWidget(self.preview)  # the live preview, also for edits
        self.timeline.start()
        self.banner.hide()
        self.progress.setRange(0, 0)  # busy until the first step reports
        self.progress.setFormat("Starting…")
        self.worker.submit.emit(item)

    @property
    def current_job(self) -> int | None:
        return self.active.item.job_id if self.active else None

    def cancel(self) -> None:
        """Cancel the running job. While its model still loads, the job ends now; the worker drops it
        when the load returns."""
        active = self.active
        if active is None:
            return
        active.item.cancel.set()
        if active.loading:
            self._end_job(active.item.job_id, "cancelled")
        else:
            self.progress.setFormat("Cancelling…")

    def cancel_jobs(self, job_ids: list) -> None:
        for job_id in job_ids:
            if job_id == self.current_job:
                self.cancel()
            else:
                self._queue_call(lambda: self.queue.done(job_id))
        self._refresh_queue()

    def _refresh_queue(self) -> None:
        jobs = self._queue_call(self.queue.jobs)
        self.queue_panel.show_jobs(jobs or [])

    def _queue_call(self, operation):
        try:
            return operation()
        except LatentStudioError as exc:  # the database is busy or the disk full: say so, keep going
            self.show_error(str(exc))
            return None

    def _is_active(self, item: WorkItem) -> bool:
        return self.active is not None and self.active.item is item and not self._closing

    def _job_started(self, item: WorkItem, text: str) -> None:
        if self._is_active(item):
            self.progress.setFormat(text)

    def _job_progress(self, p: StepProgress) -> None:
        if p.cell is not None and p.cell.record is not None and p.item.gallery_root == self.gallery.root:
            self.browser.images_added([p.cell.record])  # a plot's cells reach the gallery as they finish
        if not self._is_active(p.item):
            return
        self.active.loading = False
        self.progress.setRange(0, p.total)
        self.progress.setValue(p.step)
        unit = "Cell" if p.cell is not None else "Step"
        self.progress.setFormat(f"{unit} {p.step}/{p.total} · {p.seconds_left:.0f} s left")
        if not p.preview.isNull():
            self.preview.set_image(p.preview, smooth=True)
        if p.cell is None and p.step <= p.total // p.item.request.count:  # the first image's steps, kept for replay
            self.timeline.add(p.preview, p.noisy)

    def _job_finished(self, done: JobDone) -> None:
        saved = done.result.saved
        if self._closing:
            return
        if done.item.gallery_root == self.gallery.root:  # the grid shows the gallery the job saved into
            self.browser.images_added([s.record for s in (saved[-1:] if done.item.grid else saved)])
        if not self._is_active(done.item):
            return
        self.preview.set_image(done.last_image)
        if saved:
            self.timeline.finish(from_pil(saved[0].image))
        self.prompt_panel.show_seed(done.result.seeds[0])
        seconds = done.result.generation.timings.get("total", 0.0)
        made = f"{len(saved) - 1} images and their grid" if done.item.grid else f"{len(saved)} image{'s' * (len(saved) > 1)}"
        self.progress.setFormat(f"Done: {made} in {seconds:.1f} s")
        for warning in done.result.generation.warnings:
            self.statusBar().showMessage(warning, 15000)
        self._end_job(done.item.job_id, "finished", [str(s.path) for s in saved])

    def _job_failed(self, item: WorkItem, message: str) -> None:
        if self._is_active(item):
            self.show_error(message)
            self._end_job(item.job_id, "failed")

    def _job_cancelled(self, item: WorkItem) -> None:
        if self._is_active(item):
            self._end_job(item.job_id, "cancelled")

    def _end_job(self, job_id: int, outcome: str, saved: list | None = None) -> None:
        """The job leaves the queue it came from; a gallery switched away from meanwhile is closed."""
        active, self.active = self.active, None
        self._queue_call(lambda: active.queue.done(job_id))
        if active.queue.gallery is not self.gallery:
            active.queue.gallery.close()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        if outcome != "finished":
            self.progress.setFormat(outcome.capitalize())
        self._refresh_queue()
        self.job_done.emit(job_id, outcome, saved or [])
        self._start_next()

    def show_error(self, message: str) -> None:
        self._banner(message, ERROR_STYLE)
        self.statusBar().showMessage(message.splitlines()[0], 10000)

    def show_note(self, message: str) -> None:
        """Something worth knowing that is not an error (settings that did not map)."""
        self._banner(message, NOTE_STYLE)

    def _banner(self, message: str, style: str) -> None:
        self.banner.setStyleSheet(style)
        self.banner.setText(message)
        self.banner.show()

    def _unexpected(self, kind, value, tb) -> None:
        """Any exception nothing caught: into the log file with its traceback, and onto the banner."""
        log.error("unexpected error", exc_info=(kind, value, tb))
        if not self._closing:
            self.show_error(f"Something went wrong: {kind.__name__}: {value}. The details are in "
                            f"{paths.log_dir() / 'latent-studio.log'}.")

    def _report_set_aside(self) -> None:
        if self.queue.set_aside:
            lines = [f"“{j.prompt[:60]}”: {j.problem}" for j in self.queue.set_aside]
            self.show_error(f"{len(lines)} queued job(s) from last time could not be run and were set aside:\n"
                            + "\n".join(lines))

    # --- gallery, history, drops ---------------------------------------------------------------

    def _load_request(self, request: GenerationRequest) -> None:
        self.prompt_panel.load_request(request)
        try:
            self.edit_panel.load_edit(request.edit, self.gallery)
        except LatentStudioError as exc:
            self.edit_panel.clear()
            self.show_error(f"The settings were loaded, but not the edit: {exc}")
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

    def load_settings_from_png(self, path: Path, fallback=None) -> None:
        """Settings from any tool's PNG into the prompt panel. The file is read on the background helper
        (never on the GUI thread: a hostile file must not freeze the window); `fallback` (the index's
        ImageMetadata) serves when the file cannot be read any more."""
        from desktop.gallery.metadata import read_image_metadata
        from desktop.gallery.pngchunks import UnreadablePNG

        def work():
            try:
                return read_image_metadata(path)[1]
            except (UnreadablePNG, OSError) as exc:
                raise LatentStudioError(f"Cannot read {path.name}: {exc}.") from exc

        def failed(message: str) -> None:
            if fallback is not None:
                self._apply_metadata(path.name, fallback)
            else:
                self.show_error(message)

        self.tasks.run(work, lambda meta: self._apply_metadata(path.name, meta), failed)

    def _apply_metadata(self, name: str, meta) -> None:
        if meta.source == "none":
            found = f" It holds other metadata ({', '.join(key for key, _ in meta.other)})." if meta.other else ""
            self.show_error(f"{name} carries no generation settings this app can read.{found}")
            return
        request, dropped = meta.request.keep_valid()
        self._load_request(request)
        notes = list(meta.notes) + self._missing_networks(request)
        if dropped:
            notes.append(f"not used, outside this app's ranges: {', '.join(dropped)}")
        if notes:
            self.show_note(f"Settings loaded from {name} ({meta.source}). Did not map: " + "; ".join(notes) + ".")
        self.statusBar().showMessage(f"Settings loaded from {name} ({meta.source}).", 8000)
        self.settings_loaded.emit(name)

    def _insert_in_prompt(self, text: str) -> None:
        editor = self.prompt_panel.prompt
        cursor = editor.textCursor()
        before = editor.toPlainText()[: cursor.position()]
        cursor.insertText((" " if before and not before.endswith((" ", "\n")) else "") + text)
        editor.setFocus()

    def _missing_networks(self, request: GenerationRequest) -> list[str]:
        """The prompt's LoRAs this machine does not have (the tags stay in the prompt)."""
        from desktop.engine import loras

        try:
            wanted = {use.name for use in loras.uses_in(request.prompt)}
        except LatentStudioError as exc:
            return [str(exc)]
        installed = loras.find_files(loras.lora_folders(self.settings.lora_folders))
        missing = sorted(name for name in wanted if name not in installed)
        return [f"LoRAs not installed: {', '.join(missing)} (put them in {loras.lora_folders()[0]})"] if missing else []

    def _import_folder(self) -> None:
        from desktop.gallery import scan

        folder = QFileDialog.getExistingDirectory(self, "Import a folder of PNG images")
        if folder:
            self._scan_in_background(lambda gallery: scan.import_folder(gallery, Path(folder)), "Importing…")

    def _rescan(self) -> None:
        from desktop.gallery import scan

        self._scan_in_background(scan.rescan, "Rescanning the gallery…")

    def _scan_in_background(self, operation, message: str) -> None:
        """Reads every file, so it runs on the background helper with its own database connection."""
        from desktop.gallery.store import Gallery

        root = self.gallery.root

        def work():
            with Gallery(root, reconcile=False) as gallery:
                return operation(gallery)

        self.statusBar().showMessage(message)
        self.tasks.run(work, self._scan_done, self.show_error)

    def _scan_done(self, report) -> None:
        self.browser.reload()
        self.history.reload()
        self.statusBar().showMessage(report.summary().splitlines()[0], 10000)

    # --- settings and lifetime ---------------------------------------------------------------

    def _open_settings(self) -> None:
        from desktop.ui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, str(paths.default_gallery_dir()), self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings())

    def apply_settings(self, new: Settings) -> bool:
        """The new gallery opens before the settings name it, so an unusable folder is never saved."""
        from desktop.gallery.store import gallery_root, open_gallery

        gallery = None
        try:
            if gallery_root(new) != self.gallery.root:
                gallery = open_gallery(new)
            save_settings(new)
        except (LatentStudioError, OSError) as exc:
            if gallery is not None:
                gallery.close()
            self.show_error(f"Settings not changed: {exc}")
            return False
        if gallery is not None:
            self._switch_gallery(gallery)
        self.settings = new
        self._load_models()
        self.networks.reload()  # its folders may have changed
        return True

    def _switch_gallery(self, gallery) -> None:
        """A running job finishes into the gallery it started in, which closes when it ends."""
        from desktop.gallery.jobs import JobQueue
        from desktop.ui.instance import InstanceLock

        old, self.gallery = self.gallery, gallery
        self.queue = JobQueue(gallery, self.instance.id, InstanceLock.alive)
        self.history.gallery = self.actions.gallery = gallery
        self.browser.set_gallery(gallery)
        self.history.reload()
        self._refresh_queue()
        self._report_set_aside()
        if self.active is None or self.active.queue.gallery is not old:
            old.close()

    def _restore(self) -> None:
        if self.settings.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.window_geometry.encode()))
        if self.settings.last_request:
            try:
                request, _ = GenerationRequest.from_dict(self.settings.last_request).keep_valid()
                self.prompt_panel.load_request(request, keep_seed=False)
            except (TypeError, AttributeError):
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
        if self.active is not None:  # cancelled now; it stays queued and resumes next time
            self.active.item.cancel.set()
        self.worker.stop()
        self.tasks.stop()
        if self.active is not None and self.active.queue.gallery is not self.gallery:
            self.active.queue.gallery.close()
        self.gallery.close()
        self.instance.release()
        sys.excepthook = self._previous_hook
        super().closeEvent(event)
