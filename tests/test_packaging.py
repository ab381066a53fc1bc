"""The standalone app: build it with PyInstaller, copy it somewhere awkward, run its --self-test."""

import os
import shutil
import stat

import pytest

from desktop import packaging, paths

pytestmark = pytest.mark.packaging


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    pytest.importorskip("PyInstaller", reason="packaging needs PyInstaller (pip install pyinstaller)")
    if not any(paths.shipped_models_dir().glob("*/model_index.json")):
        pytest.skip("no shipped model to package")
    dist = tmp_path_factory.mktemp("dist")
    return packaging.build(dist, tmp_path_factory.mktemp("work"))


def test_the_bundle_runs_its_self_test_from_a_read_only_folder_with_spaces_and_unicode(bundle, tmp_path):
    root = bundle.parent if os.name != "posix" or "darwin" not in os.sys.platform else bundle.parents[2]
    place = tmp_path / "Programme mit Leerzeichen – ünïcødé"
    copy = place / root.name
    shutil.copytree(root, copy, symlinks=True)
    for path in [copy, *copy.rglob("*")]:  # read-only, as in /Applications or Program Files
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    executable = copy / bundle.relative_to(root)
    try:
        proc = packaging.self_test(executable, tmp_path / "user home")
    finally:
        for path in [copy, *copy.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "self-test passed" in proc.stdout
    gallery = tmp_path / "user home" / "data" / "gallery"
    assert list(gallery.rglob("*.png")), "the image went into the user's gallery, not the bundle"
    assert not list(copy.rglob("gallery.db"))
