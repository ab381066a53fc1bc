"""Starting the window: the application object, its name and icon, and the self-test."""

from __future__ import annotations

import os
import sys

ICON = "icons/latent-studio.png"


def run(self_test: bool = False) -> int:
    if self_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
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

        return run_self_test(app, window)
    return app.exec()
