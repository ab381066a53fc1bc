"""Starting the window: the display check, the log file, the application object and the self-test."""

from __future__ import annotations

import logging
import os
import sys

ICON = "icons/latent-studio.png"
LOG_NAME = "latent-studio.log"


def has_display() -> bool:
    """Linux and the BSDs need X11 or Wayland (or an explicit Qt platform such as offscreen)."""
    if sys.platform in ("win32", "darwin") or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def log_to_file() -> None:
    """Warnings and errors, with tracebacks, into the user log folder (the README says where)."""
    from logging.handlers import RotatingFileHandler

    from desktop import paths

    try:
        paths.log_dir().mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(paths.log_dir() / LOG_NAME, maxBytes=2_000_000, backupCount=2, encoding="utf-8")
    except OSError as exc:
        logging.getLogger(__name__).warning("no log file: %s", exc)
        return
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def run(self_test: bool = False) -> int:
    if self_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if not has_display():
        print("error: no display found, so the window cannot open. `python main.py generate \"a prompt\"` "
              "works without one (see `python main.py --help`).", file=sys.stderr)
        return 2
    log_to_file()
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from desktop import APP_NAME, paths
    from desktop.errors import LatentStudioError

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setWindowIcon(QIcon(str(paths.resources_dir() / ICON)))
    try:
        from desktop.ui.main_window import MainWindow

        window = MainWindow()
    except LatentStudioError as exc:  # e.g. the gallery database is from a newer version
        from PySide6.QtWidgets import QMessageBox

        if not self_test:
            QMessageBox.critical(None, APP_NAME, str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    window.show()
    if self_test:
        from desktop.ui.self_test import run_self_test

        code = run_self_test(app, window)
    else:
        code = app.exec()
    return _exit_code(code)


def _exit_code(code: int) -> int:
    """A generation thread still inside a model load when the window closed must not be destroyed
    while it runs (Qt aborts): everything is saved by now, so leave without tearing it down."""
    from desktop.ui.worker import threads_still_running

    if threads_still_running():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
