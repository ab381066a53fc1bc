"""The queue of generation jobs, kept in gallery.db so pending jobs survive a restart or a crash.

A job is deleted when it finishes, fails or is cancelled (its images are in the gallery by then);
one that was running when the app died is pending again on the next start.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from desktop.engine.request import GenerationRequest


@dataclass(frozen=True)
class Job:
    id: int
    request: GenerationRequest
    state: str  # pending or running


class JobQueue:
    def __init__(self, gallery):
        self.gallery = gallery
        with gallery.transaction() as conn:  # whatever was running when the app stopped runs again
            conn.execute("UPDATE jobs SET state = 'pending' WHERE state = 'running'")

    def add(self, request: GenerationRequest) -> Job:
        data = json.dumps(request.to_dict(), ensure_ascii=False)
        with self.gallery.transaction() as conn:
            last = conn.execute("SELECT coalesce(max(position), 0) FROM jobs").fetchone()[0]
            job_id = conn.execute("INSERT INTO jobs (request, position, created) VALUES (?, ?, ?) RETURNING id",
                                  (data, last + 1, time.time())).fetchone()[0]
        return Job(job_id, request, "pending")

    def jobs(self) -> list[Job]:
        """Running first, then pending in queue order."""
        rows = self.gallery.conn.execute(
            "SELECT id, request, state FROM jobs ORDER BY state = 'pending', position").fetchall()
        return [Job(i, GenerationRequest.from_dict(json.loads(r)), s) for i, r, s in rows]

    def pending(self) -> list[Job]:
        return [job for job in self.jobs() if job.state == "pending"]

    def start_next(self) -> Job | None:
        pending = self.pending()
        if not pending:
            return None
        with self.gallery.transaction() as conn:
            conn.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (pending[0].id,))
        return Job(pending[0].id, pending[0].request, "running")

    def done(self, job_id: int) -> None:
        """Finished, failed or cancelled: the job leaves the queue."""
        with self.gallery.transaction() as conn:
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def move(self, job_id: int, index: int) -> None:
        """Put a pending job at `index` among the pending ones."""
        order = [job.id for job in self.pending() if job.id != job_id]
        order.insert(max(0, min(index, len(order))), job_id)
        with self.gallery.transaction() as conn:
            conn.executemany("UPDATE jobs SET position = ? WHERE id = ?", [(n + 1, i) for n, i in enumerate(order)])
