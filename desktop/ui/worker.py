"""The one long-lived thread that owns the engine (the threading pattern in desktop/README.md).

The window queues a WorkItem through a queued signal; the worker runs it through the generation
service (load, generate, save into the job's gallery on its own connection) and reports back with
signals that carry typed values and QImage only. Each job brings its own cancel token, set from the
GUI thread with a plain method call, so a cancel pressed before the worker picks the job up, while
its model loads, or between steps is honoured, and nothing half-denoised is decoded or saved.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QImage

from desktop.engine.request import GenerationRequest
from desktop.ui.qt_images import from_pil

log = logging.getLogger(__name__)
_stuck_threads: list = []  # threads that did not stop in time: kept alive, never destroyed while running


@dataclass(frozen=True)
class WorkItem:
    """A job as the worker gets it: fixed when it starts, whatever the window does meanwhile."""

    job_id: int
    request: GenerationRequest
    gallery_root: Path
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)
    grid: dict | None = None  # an X/Y/Z plot's axes: the job makes every cell, then the grid


@dataclass(frozen=True)
class StepProgress:
    item: WorkItem
    step: int
    total: int
    seconds_left: float
    preview: QImage  # the predicted clean image x̂₀ (the latent itself when the step has no prediction)
    noisy: QImage  # the latent being denoised
    cell: object = None  # an X/Y/Z plot's cell just saved (SavedImage): step and total count cells


@dataclass(frozen=True)
class JobDone:
    item: WorkItem
    result: object  # service.JobResult
    last_image: QImage  # the last image made, so the window need not read the file back


class GenerationWorker(QObject):
    # Each signal names the WorkItem itself, so a late report of an ended job is never taken for
    # a later job with the same id (ids repeat across galleries).
    started = Signal(object, str)  # WorkItem, what is happening ("Loading model…")
    progress = Signal(object)  # StepProgress
    finished = Signal(object)  # JobDone
    failed = Signal(object, str)  # WorkItem, message for a person
    cancelled = Signal(object)  # WorkItem

    def __init__(self, settings_source):
        super().__init__()
        self._settings_source = settings_source  # () -> Settings, read at the start of every job
        self._service = None

    @Slot(object)
    def run_job(self, item: WorkItem) -> None:
        from desktop.engine.generation import GenerationCancelled
        from desktop.errors import LatentStudioError

        if item.cancel.is_set():  # cancelled while it waited for this thread
            self.cancelled.emit(item)
            return
        try:
            self.started.emit(item, "Loading model…")
            service = self._prepare(item.gallery_root)
            if item.grid is None:
                result = service.run(item.request, on_step=self._reporter(item), cancel=item.cancel)
            else:
                result = self._run_grid(service, item)
            self.finished.emit(JobDone(item, result, from_pil(result.saved[-1].image)))
        except GenerationCancelled:
            self.cancelled.emit(item)
        except LatentStudioError as exc:
            self.failed.emit(item, str(exc))
        except MemoryError:
            self.failed.emit(item, "Out of memory. Try a smaller size, fewer images, or attention slicing 'on'.")
        except Exception as exc:  # the window must keep working whatever a model does
            log.exception("generation failed")
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            self.failed.emit(item, f"Generation failed: {type(exc).__name__}: {first_line} "
                                          "(details in the log file; see Help → About)")

    def _prepare(self, gallery_root: Path):
        """The service as the settings say now, saving into the job's gallery."""
        from desktop.gallery.store import Gallery
        from desktop.service import GenerationService

        settings = self._settings_source()
        service = self._service
        if service is not None and service.gallery.root != gallery_root:
            service.gallery.close()
            service.gallery = Gallery(gallery_root, reconcile=False)
        if service is None:
            service = self._service = GenerationService(settings, Gallery(gallery_root, reconcile=False))
        service.configure(settings)  # the loaded model is reused unless model, device or precision changed
        return service

    def _run_grid(self, service, item: WorkItem):
        """Every cell as a normal image (each shown as it finishes), then the labelled grid."""
        from desktop.engine import grid

        axes = grid.axes_from_record(item.grid)
        total = len(grid.cells(item.request, *axes))
        started, made = time.monotonic(), []

        def on_cell(_cell, job) -> None:
            made.append(job)
            left = (time.monotonic() - started) / len(made) * (total - len(made))
            image = from_pil(job.saved[0].image)
            self.progress.emit(StepProgress(item, len(made), total, left, image, image, cell=job.saved[0]))

        return service.run_grid(item.request, *axes, cancel=item.cancel, on_cell=on_cell)

    def _reporter(self, item: WorkItem):
        started = time.monotonic()

        def on_step(step: int, total: int, preview) -> None:
            elapsed = time.monotonic() - started
            left = elapsed / step * (total - step) if step else 0.0
            noisy = from_pil(preview.noisy)
            clean = from_pil(preview.clean) if preview.clean is not None else noisy
            self.progress.emit(StepProgress(item, step, total, left, clean, noisy))

        return on_step

    @Slot()
    def shutdown(self) -> None:
        """On this thread: close the gallery connection it opened, then end the thread's loop."""
        if self._service is not None:
            self._service.gallery.close()
            self._service = None
        QThread.currentThread().quit()


class WorkerThread(QObject):
    """Owns the QThread and the worker on it; `submit` crosses threads through a queued signal."""

    submit = Signal(object)  # WorkItem
    _stop = Signal()

    def __init__(self, settings_source, parent=None):
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("generation")
        self.worker = GenerationWorker(settings_source)
        self.worker.moveToThread(self.thread)
        self.submit.connect(self.worker.run_job)
        self._stop.connect(self.worker.shutdown)
        self.thread.start()

    def stop(self, wait_ms: int = 30_000) -> bool:
        """Ask the worker to finish (the caller cancels the running job first); True once it has."""
        self._stop.emit()
        if self.thread.wait(wait_ms):
            return True
        log.warning("the generation thread did not stop within %d s; leaving it to finish", wait_ms // 1000)
        _stuck_threads.append((self.thread, self.worker))
        return False


def threads_still_running() -> bool:
    """True when a worker thread outlived its window (the app then exits without destroying it)."""
    return any(thread.isRunning() for thread, _ in _stuck_threads)
