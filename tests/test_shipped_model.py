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
SIBLING = paths.shipped_models_dir() / "latent-shapes-inpaint"
pytestmark = pytest.mark.skipif(not (SHIPPED / "model_index.json").is_file(),
                                reason="the shipped model is not in resources/models")

# One prompt per colour and shape, with seeds held fixed (unseen in training: a separate seed range).
CHECKS = [("red", "circle", "blue", 7), ("green", "square", "yellow", 8), ("blue", "triangle", "white", 9),
          ("yellow", "circle", "purple", 10), ("purple", "square", "orange", 11), ("orange", "triangle", "black", 12),
          ("white", "square", "green", 13), ("black", "circle", "red", 14)]


def test_it_is_the_default_model_small_and_complete():
    info = ModelRegistry().default()
    assert (info.name, info.source) == ("latent-shapes", "shipped")
    size = sum(f.stat().st_size for folder in (SHIPPED, SIBLING) for f in folder.rglob("*") if f.is_file())
    assert size <= 30e6  # both models together
    assert read_defaults(SHIPPED).inpainting_model == SIBLING.name
    assert json.loads((SIBLING / "unet" / "config.json").read_text())["in_channels"] == 9
    defaults = read_defaults(SHIPPED)
    assert (defaults.width, defaults.height) == (128, 128) and defaults.example_prompt
    assert defaults.steps <= 30 and defaults.scheduler
    preview = json.loads((SHIPPED / "latent_preview.json").read_text())
    assert len(preview["factors"]) == 4 and all(len(row) == 3 for row in preview["factors"])
    card = (SHIPPED / "README.md").read_text()
    assert "python main.py demo" in card and "| all attributes right |" in card and "| no edge artifacts |" in card


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


def test_auto_precision_runs_both_models_as_measured(monkeypatch, tiny_model):
    """On a CPU with native bf16 the rule says bf16, which costs these small models quality for no speed."""
    from desktop.engine import devices
    from desktop.engine.generation import Engine, EngineOptions

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    engine = Engine(options=EngineOptions(device="cpu", precision="auto"))
    for folder in (SHIPPED, SIBLING):
        assert engine.load(str(folder)).placement.precision == "fp32"
    assert engine.load(str(tiny_model)).placement.precision == "bf16"  # a model that names none: the rule
    engine = Engine(options=EngineOptions(device="cpu", precision="bf16"))
    assert engine.load(str(SHIPPED)).placement.precision == "bf16"  # the user's choice wins


# Sizes and positions, one prompt each, seeds held fixed.
PLACED = [("small", "red", "circle", "top left", "blue", 21), ("large", "green", "square", None, "yellow", 22),
          ("small", "yellow", "triangle", "bottom right", "purple", 23), ("medium", "blue", "circle", "right", "white", 24),
          ("large", "white", "circle", "center", "black", 25), ("small", "orange", "square", "top", "green", 26)]


def test_the_judge_reads_the_shipped_decoders_round_trip_as_captioned():
    """What a perfect denoiser would give through this decoder must be judged right: the judge's shape
    cuts are calibrated there (on 2,000 images; on 600 of a different range they land close)."""
    from desktop.demo import evaluate, finetune, train
    from desktop.demo.judge import SHAPE_CUTS

    vae = finetune.load_components(SHIPPED)[0].eval()
    first = evaluate.ROUND_TRIP_SEEDS + 10_000
    pairs = train.round_trip(vae, range(first, first + 600))
    verdicts = [(sample, judge(image)) for sample, image in pairs]
    for key in ("shape", "size", "colour", "background"):
        right = sum(getattr(v, key) == getattr(s, key) for s, v in verdicts)
        assert right >= 0.99 * len(pairs), f"{key}: {right}/{len(pairs)}"
    cuts = evaluate.calibrate_shape_cuts(pairs)
    assert all(abs(cuts[name] - cut) <= 0.03 for name, cut in SHAPE_CUTS), cuts


def test_it_draws_the_size_and_position_it_is_asked_for(engine):
    from desktop.demo.domain import caption

    right = []
    for size, colour, shape, position, background, seed in PLACED:
        prompt = caption(colour, shape, background, size, position)
        verdict = judge(engine.generate(GenerationRequest(prompt, seed=seed, model=str(SHIPPED))).images[0])
        right.append((verdict.colour, verdict.size) == (colour, size) and position in (None, verdict.position)
                     and verdict.edge_artifacts == 0)
    assert sum(right) >= 5, right  # the full evaluation (72 prompts) is in the model card


# The card's prompts whose images had a faint line along one side before the decoder met the denoiser
# (stage 6): the decoder had only seen the encoder's latents, and sampling ends on the UNet's.
LINED = [("white", "circle", "black", "large", "bottom left", 1006), ("blue", "triangle", "white", "large", None, 1026),
         ("blue", "square", "black", "large", "center", 1034), ("yellow", "square", "green", "large", "left", 1043),
         ("purple", "square", "yellow", "large", "top right", 1052)]


def test_generated_images_have_clean_edges(engine):
    from desktop.demo.domain import caption

    edges = [judge(engine.generate(GenerationRequest(caption(*item[:5]), seed=item[5], model=str(SHIPPED))).images[0])
             .edge_artifacts for item in LINED]
    assert sum(e == 0 for e in edges) >= 4, edges


def test_image_to_image_with_the_own_caption_keeps_the_image(engine):
    import numpy as np

    from desktop.demo.render import render
    from desktop.engine.request import Edit
    from desktop.gallery.inputs import pixel_hash

    kept = []
    for seed in (900_001, 900_002, 900_003, 900_004):
        sample = render(seed)
        edit = Edit(pixel_hash(sample.image), strength=0.3)
        out = engine.generate(GenerationRequest(sample.caption, seed=1, model=str(SHIPPED), edit=edit),
                              inputs={edit.init_image: sample.image}).images[0]
        verdict, truth = judge(out), judge(sample.image)
        difference = np.abs(np.asarray(out, np.float32) - np.asarray(sample.image, np.float32)).mean()
        attributes = ("colour", "shape", "background", "size", "position")
        kept.append([getattr(verdict, a) for a in attributes] == [getattr(truth, a) for a in attributes]
                    and difference < 8)
    assert sum(kept) >= 3, kept


def inpaint_with_the_shipped_model(engine, cases: int):
    """Each case's empty corner repainted through latent-shapes; checks the routing and the outside."""
    import numpy as np
    from PIL import ImageDraw

    from desktop.demo.evaluate import inpaint_cases
    from desktop.engine.request import Edit
    from desktop.gallery.inputs import pixel_hash

    from desktop.demo.domain import caption

    right = []
    for case in inpaint_cases(cases):
        sample, box = case["sample"], case["box"]
        mask = Image.new("L", sample.image.size, 0)
        ImageDraw.Draw(mask).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
        edit = Edit(pixel_hash(sample.image), mask=pixel_hash(mask))
        prompt = caption(case["colour"], case["shape"], sample.background, "small", case["corner"])
        result = engine.generate(GenerationRequest(prompt, seed=case["seed"], model=str(SHIPPED), edit=edit),
                                 inputs={edit.init_image: sample.image, edit.mask: mask})
        assert result.model.name == "latent-shapes-inpaint" and result.request.model.endswith("latent-shapes-inpaint")
        assert any("Inpainting with latent-shapes-inpaint" in w for w in result.warnings)
        out = result.images[0]
        verdict = judge(out.crop(box))
        keep = np.ones((128, 128), bool)
        band = 3 * 4 + 1  # the default mask blur's reach (3 sigma, plus one)
        keep[max(0, box[1] - band) : box[3] + band, max(0, box[0] - band) : box[2] + band] = False
        outside = np.abs(np.asarray(out, np.float32) - np.asarray(sample.image, np.float32)).max(axis=2)[keep]
        assert outside.max() == 0  # beyond the mask and its blur band the pixels are the original's
        right.append((verdict.colour, verdict.shape) == (case["colour"], case["shape"]))
    return right


def test_inpainting_goes_through_the_sibling_and_keeps_the_rest(engine):
    inpaint_with_the_shipped_model(engine, 2)


def test_the_sibling_draws_what_is_asked(engine):
    """At its own defaults (91.7 % of the card's 24 cases; here the first 6, of which it misses one)."""
    assert sum(inpaint_with_the_shipped_model(engine, 6)) >= 5


def test_the_sibling_can_be_picked_but_only_inpaints(engine):
    from desktop.errors import LatentStudioError

    info = ModelRegistry().resolve("latent-shapes-inpaint")
    assert info.source == "shipped" and "inpainting" in info.kind
    with pytest.raises(LatentStudioError, match="inpainting model"):
        engine.generate(GenerationRequest("a red circle on a blue background", model="latent-shapes-inpaint"))


def test_the_vae_posterior_is_deterministic():
    import torch
    from diffusers import AutoencoderKL

    from desktop.demo.train import images_tensor

    vae = AutoencoderKL.from_pretrained(SHIPPED / "vae").float()
    with torch.no_grad():
        posterior = vae.encode(images_tensor([1, 2])).latent_dist
    assert torch.allclose(posterior.sample(torch.Generator().manual_seed(0)), posterior.mean, atol=1e-4)


def test_the_decoder_draws_clean_edges_and_corners():
    """Issue 16's edge measure at its root: rendered images through the shipped VAE and back. Before the
    decoder's tail pass 63 of 64 came back with an off-colour corner pixel; after it, 2 of 64."""
    from desktop.demo import finetune, train

    vae = finetune.load_components(SHIPPED)[0].eval()
    clean = [judge(image).edge_artifacts == 0 for _, image in train.round_trip(vae, range(7000, 7032))]
    assert sum(clean) >= 30, f"{sum(clean)}/32 clean"
    assert finetune.frame_error(vae)["corners"] < 10  # 0-255; 46.8 in the first edition, 30.4 before the tail pass
