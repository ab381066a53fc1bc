"""Faults the gallery must survive, in real subprocesses: kill -9, two writers, a full disk."""

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from desktop.errors import LatentStudioError
from desktop.gallery.pngchunks import read_png_info
from desktop.gallery.store import DB_NAME, Gallery

REPO = Path(__file__).resolve().parent.parent

SAVER = """
import resource, signal, sys
from pathlib import Path
from PIL import Image
from desktop.engine.request import GenerationRequest
from desktop.errors import LatentStudioError
from desktop.gallery.store import Gallery

root, count, tag, side = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
limit = int(sys.argv[5]) if len(sys.argv) > 5 else 0
if limit:  # files may not grow past this: a disk that fills up
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
with Gallery(root) as gallery:
    if limit:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    for i in range(count):
        size = side if i == 0 or not limit else 4 * side
        req = GenerationRequest(prompt=f"{tag} {i}", steps=4, guidance=5.0, width=size, height=size, scheduler="Euler")
        try:
            path = gallery.save_image(Image.effect_noise((size, size), 80).convert("RGB"), req.for_image(7), {"name": "m"}).path
        except LatentStudioError as exc:
            print("ERROR", exc, flush=True)
            sys.exit(2)
        print(path, flush=True)
"""


def saver(root: Path, count: int, tag: str, side: int = 128, limit: int = 0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", SAVER, str(root), str(count), tag, str(side), str(limit)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def final_pngs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.png") if not p.name.startswith(".")]


def test_kill_9_during_saves_loses_no_completed_image(tmp_path):
    root = tmp_path / "gallery"
    process = saver(root, 100_000, "killed", side=256)
    completed = []
    while len(completed) < 25:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        completed.append(Path(line.strip()))
    process.send_signal(signal.SIGKILL)
    process.wait()
    for png in final_pngs(root):  # never a partial PNG under a final name
        assert read_png_info(png).width == 256, png
    conn = sqlite3.connect(root / DB_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with Gallery(root) as gallery:
        listed = {r.path for r in gallery.page(limit=100_000)}
        assert set(completed) <= listed
        assert listed == set(final_pngs(root))  # one more may have finished after the last print


def test_two_processes_saving_at_once_keep_every_image(tmp_path):
    root = tmp_path / "gallery"
    Gallery(root).close()
    processes = [saver(root, 15, tag) for tag in ("left", "right")]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    paths = [Path(line) for out, _ in outputs for line in out.split()]
    assert len(set(paths)) == 30  # same second, same seed: still distinct names
    with Gallery(root) as gallery:
        assert gallery.count() == 30 and {r.path for r in gallery.page(limit=100)} == set(paths)


def test_a_full_disk_gives_a_clear_error_and_keeps_what_was_saved(tmp_path):
    root = tmp_path / "gallery"
    Gallery(root).close()
    process = saver(root, 3, "full", side=128, limit=400_000)  # 128 px fits, 512 px does not
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    first, error = out.splitlines()
    assert error.startswith("ERROR") and "Nothing was saved" in error and "Traceback" not in err
    assert final_pngs(root) == [Path(first)]
    assert not [p for p in root.rglob(".partial-*")]
    with Gallery(root) as gallery:
        assert [r.path for r in gallery.page()] == [Path(first)]


@pytest.mark.skipif(os.geteuid() == 0, reason="as root, folder permissions do not stop writes")
def test_a_read_only_gallery_gives_a_clear_error(tmp_path):
    from PIL import Image

    from desktop.engine.request import GenerationRequest

    root = tmp_path / "gallery"
    with Gallery(root) as gallery:
        first = gallery.save_image(Image.new("RGB", (64, 64)), GenerationRequest("x", seed=1), {}).path
    first.parent.chmod(0o555)
    try:
        with Gallery(root) as gallery, pytest.raises(LatentStudioError, match="Nothing was saved"):
            gallery.save_image(Image.new("RGB", (64, 64)), GenerationRequest("y", seed=2), {})
    finally:
        first.parent.chmod(0o755)
    assert final_pngs(root) == [first]
