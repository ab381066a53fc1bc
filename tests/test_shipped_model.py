"""The model this project trains and ships: the default of a fresh install, and it draws what it is asked."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image
from test_checkpoints import NO_NETWORK
from test_cli import ROOT

from desktop import paths
from desktop.demo.judge import judge
from desktop.engine.models import ModelRegistry, read_defaults
from desktop.engine.request import GenerationRequest

SHIPPED = paths.shipped_models_dir() / "latent-shapes"
pytestmark = pytest.mark.skipif(not (SHIPPED / "model_index.json").is_file(),
                                reason="the shipped model is not in resources/models")

# One prompt per colour and shape, with seeds held fixed (unseen in training: a separate seed range).
CHECKS = [("red", "circle", "blue", 7), ("green", "square", "yellow", 8), ("blue", "triangle", "white", 9),
          ("yellow", "circle", "purple", 10), ("purple", "square", "orange", 11), ("orange", "triangle", "black", 12),
          ("white", "square", "green", 13), ("black", "circle", "red", 14)]


def test_it_is_the_default_model_small_and_complete():
    info = ModelRegistry().default()
    assert (info.name, info.source) == ("latent-shapes", "shipped")
    size = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert size <= 25e6
    defaults = read_defaults(SHIPPED)
    assert (defaults.width, defaults.height) == (128, 128) and defaults.example_prompt
    assert defaults.steps <= 30 and defaults.scheduler
    preview = json.loads((SHIPPED / "latent_preview.json").read_text())
    assert len(preview["factors"]) == 4 and all(len(row) == 3 for row in preview["factors"])
    card = (SHIPPED / "README.md").read_text()
    assert "python main.py demo train" in card and "| all three right |" in card


def test_it_draws_the_colours_and_shapes_it_is_asked_for(engine):
    right = []
    for colour, shape, background, seed in CHECKS:
        prompt = f"a {colour} {shape} on a {background} background"
        result = engine.generate(GenerationRequest(prompt, seed=seed, model=str(SHIPPED)))
        verdict = judge(result.images[0])
        right.append((verdict.colour, verdict.shape, verdict.background) == (colour, shape, background))
    assert sum(right) >= 7, right  # the full evaluation (48 prompts) is in the model card


def test_generate_works_right_after_install_offline(tmp_path):
    proc = subprocess.run([sys.executable, "-c", NO_NETWORK, "generate", "a red circle on a blue background",
                           "--seed", "3", "--json"], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["model"]["name"] == "latent-shapes"
    verdict = judge(Image.open(report["images"][0]["path"]))
    assert (verdict.colour, verdict.background) == ("red", "blue")
