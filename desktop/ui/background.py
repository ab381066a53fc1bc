"""Work off the GUI thread that is not generation: thumbnails, rescans, imports, export, trash.

One helper for all of it (after Anki's taskman and calibre's grid): a task runs on a small thread
pool and its result comes back to the GUI thread through one queued signal. Tasks asked for
`newest_first` (thumbnails) run in reverse order of asking, so the cells the user is looking at now
come before those scrolled past; user actions run before any of them. A task never touches widgets.
"""

from __future__ import annotations

import itertools
import logging
from typing import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from desktop.errors import LatentStudioError

log = logging.getLogger(__name__)
USER_ACTION_PRIORITY = 2**30  # above every thumbnail


class _Signals(QObject):
    done = Signal(int, object)  # task number, result
    failed = Signal(int, str)  # task number, message for a person


class _Task(QRunnable):
    def __init__(self, number: int, work: Callable[[], object], signals: _Signals):
        super().__init__()
        self.number, self.work, self.signals = number, work, signals

    def run(self) -> None:
        try:
            result = self.work()
        except LatentStudioError as exc:
            self.signals.failed.emit(self.number, str(exc))
        except Exception as exc:  # reported in the window and the log, never lost on a pool thread
            log.exception("background task failed")
            self.signals.failed.emit(self.number, f"{type(exc).__name__}: {exc}")
        else:
            self.signals.done.emit(self.number, result)


class BackgroundTasks(QObject):
    def __init__(self, parent=None, threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._signals = _Signals(self)
        self._signals.done.connect(self._done)
        self._signals.failed.connect(self._failed)
        self._callbacks: dict[int, tuple[Callable, Callable]] = {}
        self._numbers = itertools.count(1)

    def run(self, work: Callable[[], object], on_done: Callable[[object], None],
            on_failed: Callable[[str], None], newest_first: bool = False) -> None:
        number = next(self._numbers)
        self._callbacks[number] = (on_done, on_failed)
        self.pool.start(_Task(number, work, self._signals), number if newest_first else USER_ACTION_PRIORITY)

    def stop(self, wait_ms: int = 10_000) -> None:
        """Drop what has not started and wait for what has (the window is closing)."""
        self.pool.clear()
        self.pool.waitForDone(wait_ms)
        self._callbacks.clear()

    def _done(self, number: int, result) -> None:
        on_done, _ = self._callbacks.pop(number, (None, None))
        if on_done is not None:
            on_done(result)

    def _failed(self, number: int, message: str) -> None:
        _, on_failed = self._callbacks.pop(number, (None, None))
        if on_failed is not None:
            on_failed(message)
