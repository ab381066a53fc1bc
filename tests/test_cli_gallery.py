"""`generate` into the gallery and the `gallery ...` commands, in real subprocesses."""

import json

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from test_cli import run_cli

RECORD_KEYS = {"path", "prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height", "scheduler",
               "model", "created", "favourite"}


def gallery_json(*args):
    proc = run_cli("gallery", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def generated(tiny_model):
    proc = run_cli("generate", "a red circle, on: blue", "--negative", "dull", "--model", tiny_model, "--size", "64",
                   "--steps", "2", "--seed", "40", "--count", "2", "--scheduler", "DDIM", "--json")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("generate", "a green square", "--model", tiny_model, "--size", "64x128", "--steps", "1",
                   "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    return gallery_json("list")


def test_generate_saves_into_the_gallery_and_list_prints_records(generated, tiny_model):
    assert [r["prompt"] for r in generated] == ["a green square", "a red circle, on: blue", "a red circle, on: blue"]
    assert all(RECORD_KEYS <= set(r) for r in generated)
    circle = generated[-1]
    assert {k: circle[k] for k in ("negative_prompt", "seed", "steps", "width", "height", "scheduler", "model",
                                    "favourite")} == {"negative_prompt": "dull", "seed": 40, "steps": 2, "width": 64,
                                                       "height": 64, "scheduler": "DDIM", "model": tiny_model.name,
                                                       "favourite": False}
    assert generated[0]["height"] == 128
    history = gallery_json("history")
    assert [(h["prompt"], h["use_count"]) for h in history] == [("a green square", 1), ("a red circle, on: blue", 1)]


def test_search_show_favourite_and_filters(generated):
    assert [r["prompt"] for r in gallery_json("search", "squ")] == ["a green square"]
    assert gallery_json("search", "nothing-like-this") == []
    square = generated[0]
    assert run_cli("gallery", "favourite", square["id"]).returncode == 0
    assert [r["id"] for r in gallery_json("list", "--favourites")] == [square["id"]]
    assert [r["id"] for r in gallery_json("list", "--size", "64x128")] == [square["id"]]
    assert len(gallery_json("list", "--limit", "1", "--offset", "1")) == 1
    shown = gallery_json("show", str(square["id"]))
    assert shown["favourite"] and shown["metadata"]["source"] == "latent_studio"
    assert set(shown["chunks"]) == {"parameters", "latent_studio"}
    by_path = gallery_json("show", square["path"])
    assert by_path["id"] == square["id"]


def test_rescan_export_and_delete(generated, isolated_home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    gallery_root = isolated_home / "data" / "gallery"
    info = PngInfo()
    info.add_text("parameters", "dropped in by hand\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 32x32")
    Image.new("RGB", (32, 32)).save(gallery_root / "by hand.png", pnginfo=info)
    report = gallery_json("rescan")
    assert report["added"] == 1 and report["marked_missing"] == 0
    ids = [r["id"] for r in gallery_json("list")]
    exported = gallery_json("export", *ids[:2], "--to", tmp_path / "export", "--no-metadata")
    assert len(exported) == 2 and all(Image.open(p).text == {} for p in exported)
    assert gallery_json("delete", ids[0], "--keep-file")["count"] == 1
    assert gallery_json("delete", ids[1])["action"] == "moved to the trash"
    gallery_json("rescan", "--rebuild")
    assert len(gallery_json("list")) == 2  # the removed image stays removed; the file is still there


@pytest.mark.parametrize("args, message", [
    (["gallery", "show", "999"], "No image with id 999"),
    (["gallery", "show", "/no/such.png"], "No image"),
    (["gallery", "list", "--since", "last tuesday"], "dates look like"),
    (["gallery", "list", "--limit", "0"], "--limit"),
    (["gallery", "import", "/no/such/folder"], "is not a folder"),
    (["gallery", "delete", "12345"], "No image with id"),
    (["gallery"], "required"),
])
def test_gallery_user_errors_exit_2_with_one_line(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
