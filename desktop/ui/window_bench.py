"""`gallery bench --window`: the window on a large gallery, as a user meets it.

Measures the time until the window is shown, until the grid's first page is filled, and the worst
stall of the event loop while the grid scrolls to the last image (a 5 ms timer records the longest
gap between its ticks). Thumbnails are made by the background helper meanwhile, as in real use.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def measure(gallery_root: Path) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from desktop.settings import Settings

    app = QApplication.instance() or QApplication([])
    started = time.perf_counter()
    from desktop.ui.main_window import MainWindow

    window = MainWindow(Settings(gallery_dir=str(gallery_root)))
    window.show()
    app.processEvents()
    shown = time.perf_counter() - started
    grid = window.browser.grid
    window.tabs.setCurrentWidget(window.browser)
    app.processEvents()
    first_page = time.perf_counter() - started
    rows_first = window.browser.model.rowCount()

    gaps, clock = [], QElapsedTimer()
    clock.start()

    def tick() -> None:
        gaps.append(clock.restart())

    timer = QTimer(interval=5)
    timer.timeout.connect(tick)
    timer.start()
    scroll_started = time.perf_counter()
    bar = grid.verticalScrollBar()
    total = window.browser.model.total
    while window.browser.model.rowCount() < total or bar.value() < bar.maximum():
        bar.setValue(min(bar.maximum(), bar.value() + grid.viewport().height()))  # a page at a time
        end = time.perf_counter() + 0.01
        while time.perf_counter() < end:
            app.processEvents()
    scroll_seconds = time.perf_counter() - scroll_started
    timer.stop()
    window.close()
    app.processEvents()
    return {"window_shown_s": shown, "first_page_s": first_page, "first_page_rows": rows_first,
            "scroll_to_end_s": scroll_seconds, "rows_at_end": total,
            "worst_stall_ms": max(gaps[1:], default=0), "median_tick_ms": sorted(gaps)[len(gaps) // 2] if gaps else 0}
