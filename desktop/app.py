"""Entry point: a CLI command when one is given, else the desktop window."""

from __future__ import annotations

import logging
import sys


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    from desktop import cli

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--convert-pickle-worker"]:  # the isolated process of `models convert`
        from desktop.engine.convert import worker

        return worker(*argv[1:3])
    if not argv or argv == ["--self-test"]:
        setup_logging()
        from desktop.ui.app import run

        return run(self_test=bool(argv))
    return cli.run(argv)
