"""The window's job queue, kept in gallery.db so pending jobs survive a restart or a crash.

Every job has an owner: the window instance that queued it. Two windows on one gallery each see and
run only their own jobs; a window adopts another's jobs only when `owner_alive` says that instance
is gone (the UI answers with a per-instance lock file), so a crash loses nothing and no job runs
twice. Claiming the next job is one UPDATE, atomic across processes. A job is deleted when it
finishes, fails or is cancelled (its images are in the gallery by then).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Callable

from desktop.engine.request import GenerationRequest
from desktop.errors import LatentStudioError

log = logging.getLogger(__name__)

GRID_KEY = "grid"  # in a job's stored request: the plot's axes (not a request field)


@dataclass(frozen=True)
class Job:
    id: int
    request: GenerationRequest
    state: str  # pending or running
    grid: dict | None = None  # an X/Y/Z plot's axes (engine/grid.py axes_record); None: one job


@dataclass(frozen=True)
class SetAside:
    """A stored job that could not be restored, and why."""

    id: int
    prompt: str
    problem: str


class JobQueue:
    def __init__(self, gallery, owner: str = "", owner_alive: Callable[[str], bool] = lambda owner: False):
        self.gallery = gallery
        self.owner = owner
        self.set_aside: list[SetAside] = []  # what opening found unusable (the window reports it)
        self._adopt(owner_alive)

    def _adopt(self, owner_alive: Callable[[str], bool]) -> None:
        """Take over the jobs of instances that are gone; what was running then runs again."""
        owners = {row[0] for row in self.gallery.conn.execute(
            "SELECT DISTINCT owner FROM jobs WHERE state != 'set_aside'")}
        orphaned = [o for o in owners if o == self.owner or not owner_alive(o)]
        rows = []
        with self.gallery.transaction() as conn:
            for owner in orphaned:
                conn.execute("UPDATE jobs SET state = 'pending', owner = ? WHERE owner = ? AND state != 'set_aside'",
                             (self.owner, owner))
            rows = conn.execute("SELECT id, request FROM jobs WHERE owner = ? AND state = 'pending'",
                                (self.owner,)).fetchall()
            for job_id, data in rows:
                problem = _problem(data)
                if problem:
                    conn.execute("UPDATE jobs SET state = 'set_aside', problem = ? WHERE id = ?", (problem, job_id))
                    self.set_aside.append(SetAside(job_id, _prompt_of(data), problem))
        for item in self.set_aside:
            log.warning("queued job %d set aside: %s", item.id, item.problem)

    def add(self, request: GenerationRequest, grid: dict | None = None) -> Job:
        """Queue a job; `grid`: the axes of an X/Y/Z plot over the request (kept beside its fields)."""
        data = json.dumps({**request.validated().to_dict(), **({GRID_KEY: grid} if grid else {})}, ensure_ascii=False)
        with self.gallery.transaction() as conn:
            last = conn.execute("SELECT coalesce(max(position), 0) FROM jobs").fetchone()[0]
            job_id = conn.execute(
                "INSERT INTO jobs (request, position, created, owner) VALUES (?, ?, ?, ?) RETURNING id",
                (data, last + 1, time.time(), self.owner)).fetchone()[0]
        return Job(job_id, request, "pending", grid)

    def jobs(self) -> list[Job]:
        """This instance's jobs: running first, then pending in queue order."""
        rows = self.gallery.conn.execute(
            "SELECT id, request, state FROM jobs WHERE owner = ? AND state != 'set_aside' "
            "ORDER BY state = 'pending', position", (self.owner,)).fetchall()
        return [_job(i, r, s) for i, r, s in rows]

    def pending(self) -> list[Job]:
        return [job for job in self.jobs() if job.state == "pending"]

    def claim_next(self) -> Job | None:
        """Mark the first pending job running and return it, in one statement (no other window can
        take the same one in between)."""
        with self.gallery.transaction() as conn:
            row = conn.execute(
                "UPDATE jobs SET state = 'running' WHERE id = (SELECT id FROM jobs WHERE owner = ? AND "
                "state = 'pending' ORDER BY position LIMIT 1) RETURNING id, request", (self.owner,)).fetchone()
        if row is None:
            return None
        return _job(row[0], row[1], "running")

    def done(self, job_id: int) -> None:
        """Finished, failed or cancelled: the job leaves the queue."""
        with self.gallery.transaction() as conn:
            conn.execute("DELETE FROM jobs WHERE id = ? AND owner = ?", (job_id, self.owner))

    def move(self, job_id: int, index: int) -> None:
        """Put a pending job at `index` among the pending ones."""
        order = [job.id for job in self.pending() if job.id != job_id]
        order.insert(max(0, min(index, len(order))), job_id)
        with self.gallery.transaction() as conn:
            conn.executemany("UPDATE jobs SET position = ? WHERE id = ?", [(n + 1, i) for n, i in enumerate(order)])


def _job(job_id: int, data: str, state: str) -> Job:
    values = json.loads(data)
    return Job(job_id, GenerationRequest.from_dict(values), state, values.get(GRID_KEY))


def _problem(data: str) -> str:
    """Why a stored request cannot run any more ('' when it can)."""
    from desktop.engine import grid

    try:
        job = _job(0, data, "pending")
        job.request.validated()
        if job.grid is not None:
            grid.cells(job.request, *grid.axes_from_record(job.grid))
    except (ValueError, TypeError, AttributeError) as exc:
        return f"unreadable ({exc})"
    except LatentStudioError as exc:
        return str(exc)
    return ""


def _prompt_of(data: str) -> str:
    try:
        return str(json.loads(data).get("prompt", ""))
    except (ValueError, AttributeError):
        return ""
