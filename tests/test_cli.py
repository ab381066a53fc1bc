"""The CLI end to end, as a user runs it: a real subprocess on a tiny model folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy(), cwd=ROOT)


def test_generate_writes_pngs_with_metadata_and_json(tiny_model, tmp_path):
    out = tmp_path / "out dir"
    proc = run_cli("generate", "a red circle, on: blue", "--model", tiny_model, "--size", "64x64", "--steps", "2",
                   "--seed", "7", "--count", "2", "--scheduler", "euler a", "--guidance", "5", "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [img["seed"] for img in report["images"]] == [7, 8]
    assert report["request"]["scheduler"] == "Euler a" and report["device"] == "cpu"
    first = Image.open(report["images"][0]["path"])
    assert first.size == (64, 64)
    assert first.text["parameters"].startswith("a red circle, on: blue\nSteps: 2, Sampler: Euler a, CFG scale: 5, Seed: 7")
    assert not list(out.glob(".partial-*"))


def test_generate_from_file_advances_seeds_and_defaults_to_the_gallery(tiny_model, isolated_home, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\na blue square\n")
    proc = run_cli("generate", "--from-file", prompts, "--model", tiny_model, "--size", "64", "--steps", "1",
                   "--seed", "100", "--count", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    reports = json.loads(proc.stdout)
    assert [r["request"]["prompt"] for r in reports] == ["a red circle", "a blue square"]
    assert [[i["seed"] for i in r["images"]] for r in reports] == [[100, 101], [102, 103]]
    for r in reports:
        for image in r["images"]:
            assert Path(image["path"]).is_file()
            assert isolated_home in Path(image["path"]).parents


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "x", "--size", "65x64"], "multiple of 8"),
        (["generate", "x", "--steps", "500"], "Steps"),
        (["generate", "x", "--guidance", "31"], "Guidance"),
        (["generate", "x", "--scheduler", "warp"], "Unknown scheduler"),
        (["generate", "x", "--size", "huge"], "Size"),
        (["generate", "x", "--steps", "many"], "invalid int"),
        (["generate", "x", "--model", "/no/such/model"], "No model named or at"),
        (["generate"], "Give a prompt"),
        (["generate", "x", "--device", "gpu"], "invalid choice"),
        (["generate", "--from-file", "/no/such/file.txt"], "Cannot read prompts"),
        (["generate", "x", "--from-file", "/no/such/file.txt"], "not both"),
        (["frobnicate"], "invalid choice"),
        (["demo", "train", "--recipe", "one-pass", "--max-minutes", "5", "--out", "x"], "no first edition to stop"),
        (["demo", "train", "--recipe", "grown-fast", "--out", "x"], "invalid choice"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_broken_model_exits_2(tiny_model, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    proc = run_cli("generate", "x", "--model", broken, "--size", "64", "--steps", "1")
    assert proc.returncode == 2 and str(broken) in proc.stderr and "Traceback" not in proc.stderr


def test_models_lists_what_the_registry_sees(tiny_model, isolated_home):
    import shutil

    shutil.copytree(tiny_model, isolated_home / "data" / "models" / "my-model")
    proc = run_cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {m["name"]: m for m in json.loads(proc.stdout)}
    assert listed["my-model"]["source"] == "user" and listed["my-model"]["kind"] == "SD (custom)"
    table = run_cli("models")
    assert "my-model" in table.stdout and "NAME" in table.stdout


def test_with_no_model_installed_generate_says_how_to_add_one(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_RESOURCES", str(tmp_path / "bare install"))  # no shipped model
    proc = run_cli("generate", "x")
    assert proc.returncode == 2 and "No model is installed" in proc.stderr and "models" in proc.stderr
