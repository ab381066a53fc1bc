"""Long work off the GUI thread (rescans, imports): a QThreadPool task whose result returns to the
GUI thread through one queued signal (after Anki's taskman). The task never touches widgets."""

from __future__ import annotations

import logging
from typing import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from desktop.errors import LatentStudioError

log = logging.getLogger(__name__)
_running: set = set()  # signal objects of tasks in flight (kept alive until they report)


class _Signals(QObject):
    done = Signal(object)
    failed = Signal(str)


class _Task(QRunnable):
    def __init__(self, work: Callable[[], object], signals: _Signals):
        super().__init__()
        self.work, self.signals = work, signals

    def run(self) -> None:
        try:
            result = self.work()
        except LatentStudioError as exc:
            self.signals.failed.emit(str(exc))
        except Exception as exc:  # reported in the window, never lost on a pool thread
            log.exception("background task failed")
            self.signals.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.signals.done.emit(result)


def run_in_background(work: Callable[[], object], on_done: Callable[[object], None],
                      on_failed: Callable[[str], None]) -> None:
    signals = _Signals()
    _running.add(signals)
    signals.done.connect(on_done)
    signals.failed.connect(on_failed)
    for signal in (signals.done, signals.failed):
        signal.connect(lambda *_: _running.discard(signals))
    QThreadPool.globalInstance().start(_Task(work, signals))
