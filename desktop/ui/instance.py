"""Which window instances are alive: each holds a lock file in the data folder while it runs.

The job queue asks `alive(owner)` before it adopts another instance's jobs. QLockFile knows a lock
is stale when the process that wrote it is gone (a crash), so a dead window's jobs are taken over
and a live one's never are.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from PySide6.QtCore import QLockFile

from desktop import paths


def _folder() -> Path:
    folder = paths.data_dir() / "instances"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _lock(owner: str) -> QLockFile:
    lock = QLockFile(str(_folder() / f"{owner}.lock"))
    lock.setStaleLockTime(0)  # stale only when its process is gone, however long a job takes
    return lock


class InstanceLock:
    def __init__(self):
        self.id = uuid.uuid4().hex
        self._lock = _lock(self.id)
        self._lock.tryLock(0)

    def release(self) -> None:
        self._lock.unlock()

    @staticmethod
    def alive(owner: str) -> bool:
        if not owner or not (_folder() / f"{owner}.lock").exists():
            return False
        probe = _lock(owner)
        if probe.tryLock(0):  # it was stale: that instance is gone
            probe.unlock()
            return False
        return True  # held, or unreadable: never take a job another window may be running
