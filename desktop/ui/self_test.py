"""`--self-test`: the real window, headless, makes one image with the default model through the
worker thread and checks that it reached the gallery. Packaging runs it on the built bundle."""

from __future__ import annotations

import sys
import time
from pathlib import Path

TIMEOUT_S = 600


def run_self_test(app, window) -> int:
    outcome: dict = {}
    window.job_done.connect(lambda job_id, result, paths: outcome.update(result=result, paths=paths))
    panel = window.prompt_panel
    if not panel.generate_button.isEnabled():
        return _fail(window, "no model is installed")
    if not panel.prompt.toPlainText().strip():
        panel.prompt.setPlainText("a red circle on a blue background")
    panel.count.setValue(1)
    started = time.monotonic()
    window.generate()
    while "result" not in outcome and time.monotonic() - started < TIMEOUT_S:
        app.processEvents()
        time.sleep(0.01)
    if outcome.get("result") != "finished":
        return _fail(window, window.banner.text() or outcome.get("result", f"no image within {TIMEOUT_S} s"))
    path = Path(outcome["paths"][0])
    record = window.gallery.find(path)
    if record is None or not path.is_file():
        return _fail(window, f"{path} did not reach the gallery")
    made = record.request
    seconds = time.monotonic() - started
    if not _close_during_a_job(app, window):
        return _fail(window, "the window did not close cleanly during a running job")
    print(f"self-test passed: {path} ({made.width}x{made.height}, model {made.model}) in {seconds:.1f} s; "
          "closed cleanly during a running job")
    return 0


def _close_during_a_job(app, window) -> bool:
    """Quit while a second job runs, as users do; the job it leaves queued is removed again."""
    from desktop.gallery.store import Gallery

    steps = []
    window.worker.worker.progress.connect(lambda p: steps.append(p.step))
    window.prompt_panel.steps.setValue(150)
    window.generate()
    job_id, root = window.current_job, window.gallery.root
    started = time.monotonic()
    while len(steps) < 2 and time.monotonic() - started < TIMEOUT_S:
        app.processEvents()
        time.sleep(0.01)
    window.close()
    with Gallery(root, reconcile=False) as gallery, gallery.transaction() as conn:
        left = conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount
    return len(steps) >= 2 and left == 1 and not window.worker.thread.isRunning()


def _fail(window, why: str) -> int:
    print(f"self-test failed: {why}", file=sys.stderr)
    window.close()
    return 1
