"""The one long-lived thread that owns the pipeline (the pattern in DESIGN.md).

The GUI calls `submit` through a queued signal; the worker loads and caches the model, generates,
saves into the gallery (its own connection) and reports back with signals carrying only plain data
and QImage. `cancel` is a plain method: it sets an Event the step callback checks, so the running
job stops within one step and nothing half-denoised is decoded or saved.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QImage

log = logging.getLogger(__name__)


def to_qimage(image) -> QImage:
    """A PIL image as a QImage that owns its pixels (safe to send to another thread)."""
    rgb = image.convert("RGB")
    data = rgb.tobytes()
    return QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888).copy()


class GenerationWorker(QObject):
    started = Signal(int, str)  # job id, what is happening ("Loading model…")
    progress = Signal(int, int, int, float, QImage)  # job id, step, total, seconds left, preview
    finished = Signal(int, list, dict)  # job id, saved paths (str), facts (seeds, timings, warnings)
    failed = Signal(int, str)  # job id, message for a person
    cancelled = Signal(int)

    def __init__(self, settings_source):
        super().__init__()
        self._settings_source = settings_source  # () -> Settings, read at the start of every job
        self._cancel = threading.Event()
        self._engine = None
        self._gallery = None

    def cancel(self) -> None:
        """Called from the GUI thread; the running job notices at its next step."""
        self._cancel.set()

    @Slot(int, dict)
    def run_job(self, job_id: int, request_data: dict) -> None:
        from desktop.engine.generation import GenerationCancelled
        from desktop.engine.request import GenerationRequest
        from desktop.errors import LatentStudioError

        self._cancel.clear()
        try:
            request = GenerationRequest.from_dict(request_data)
            self.started.emit(job_id, "Loading model…")
            engine, strip = self._prepare()
            result = engine.generate(request, on_step=self._reporter(job_id), cancel=self._cancel)
            paths = [str(self._gallery.save_image(image, result.request, seed, result.model.as_dict(), strip))
                     for image, seed in zip(result.images, result.seeds)]
            facts = {"seeds": result.seeds, "timings": result.timings, "warnings": result.warnings,
                     "request": result.request.to_dict(), "model": result.model.name}
            self.finished.emit(job_id, paths, facts)
        except GenerationCancelled:
            self.cancelled.emit(job_id)
        except LatentStudioError as exc:
            self.failed.emit(job_id, str(exc))
        except MemoryError:
            self.failed.emit(job_id, "Out of memory. Try a smaller size, fewer images, or attention slicing 'on'.")
        except Exception as exc:  # the window must keep working whatever a model does
            log.error("generation failed:\n%s", traceback.format_exc())
            self.failed.emit(job_id, f"Generation failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def _prepare(self):
        """Engine and gallery as the settings say now: changes apply from the next job on."""
        from desktop.engine.generation import Engine, EngineOptions
        from desktop.engine.models import ModelRegistry
        from desktop.gallery.store import gallery_root, open_gallery

        settings = self._settings_source()
        options = EngineOptions(device=settings.device, precision=settings.precision,
                                attention_slicing=settings.attention_slicing,
                                attention_budget_mb=settings.attention_budget_mb)
        registry = ModelRegistry(extra_folders=[Path(f) for f in settings.model_folders])
        if self._engine is None:
            self._engine = Engine(registry=registry, options=options)
        else:  # the cached pipeline is reused unless model, device or precision changed
            self._engine.registry, self._engine.options = registry, options
        if self._gallery is None or self._gallery.root != gallery_root(settings):
            if self._gallery is not None:
                self._gallery.close()
            self._gallery = open_gallery(settings, reconcile=False)
        return self._engine, settings.strip_metadata

    def _reporter(self, job_id: int):
        started = time.monotonic()

        def on_step(step: int, total: int, preview) -> None:
            elapsed = time.monotonic() - started
            left = elapsed / step * (total - step) if step else 0.0
            self.progress.emit(job_id, step, total, left, to_qimage(preview) if preview is not None else QImage())

        return on_step

    @Slot()
    def shutdown(self) -> None:
        if self._gallery is not None:
            self._gallery.close()
            self._gallery = None
        self._engine = None


class WorkerThread(QObject):
    """Owns the QThread and the worker on it; `submit` crosses threads through a queued signal."""

    submit = Signal(int, dict)
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

    def cancel(self) -> None:
        self.worker.cancel()

    def stop(self, wait_ms: int = 30_000) -> None:
        self.worker.cancel()
        self._stop.emit()
        self.thread.quit()
        self.thread.wait(wait_ms)
