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
    print(f"self-test passed: {path} ({made.width}x{made.height}, model {made.model}) "
          f"in {time.monotonic() - started:.1f} s")
    window.close()
    return 0


def _fail(window, why: str) -> int:
    print(f"self-test failed: {why}", file=sys.stderr)
    window.close()
    return 1
