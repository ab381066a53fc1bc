"""Tiny autoencoders (TAESD): found and listed, matched to the models whose latents they decode, used for
full-size x̂₀ previews and, when asked, the final decode; and x̂₀ itself read right from every sampler."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import run_cli

from desktop import paths
from desktop.engine import tiny_vae
from desktop.engine.generation import Engine, EngineOptions
from desktop.engine.models import ModelInfo, ModelRegistry
from desktop.engine.previews import predicted_clean, tracking_clean
from desktop.engine.request import GenerationRequest
from desktop.engine.schedulers import SCHEDULER_NAMES, build
from desktop.errors import LatentStudioError

SMALL = dict(width=64, height=64, seed=5, steps=3)


def save_tiny_autoencoder(folder: Path, serves: list[str] | None = None) -> Path:
    """An AutoencoderTiny with one upsampling (the tiny test models' VAE scales by 2), random weights."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8), num_encoder_blocks=(1, 1),
                    num_decoder_blocks=(1, 1)).save_pretrained(folder)
    if serves is not None:
        (folder / tiny_vae.SERVES_FILE).write_text(json.dumps({"serves": serves}))
    return folder


@pytest.fixture
def user_tiny(isolated_home, tiny_model):
    """A tiny autoencoder in the user's models folder that declares it serves the tiny test model."""
    return save_tiny_autoencoder(paths.user_models_dir() / "taesd-tiny", serves=[tiny_model.name])


def test_listed_apart_with_their_kind(tmp_path, isolated_home):
    save_tiny_autoencoder(paths.user_models_dir() / "taesd")
    save_tiny_autoencoder(paths.user_models_dir() / "vae-approx" / "taesdxl")
    registry = ModelRegistry()
    assert {(t.name, t.kind) for t in registry.tiny_autoencoders()} == {("taesd", "TAESD"), ("taesdxl", "TAESDXL")}
    assert all(m.source == "shipped" for m in registry.list())  # never offered as a model to generate with
    proc = run_cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    kinds = {m["name"]: m["kind"] for m in json.loads(proc.stdout)}
    assert kinds["taesd"] == "TAESD" and kinds["taesdxl"] == "TAESDXL"


def test_found_in_the_hugging_face_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    snapshot = cache / "models--madebyollin--taesd" / "snapshots" / ("a" * 40)
    save_tiny_autoencoder(snapshot)
    (cache / "models--madebyollin--taesd" / "refs").mkdir()
    (cache / "models--madebyollin--taesd" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    found = ModelRegistry().tiny_autoencoders()
    assert [(t.name, t.kind, t.source) for t in found] == [("madebyollin/taesd", "TAESD", "hf-cache")]


def test_which_models_each_serves(tmp_path):
    taesd = ModelInfo("taesd", "TAESD", "user", save_tiny_autoencoder(tmp_path / "taesd"))
    taesdxl = ModelInfo("taesdxl", "TAESDXL", "user", save_tiny_autoencoder(tmp_path / "taesdxl"))
    own = ModelInfo("my-shapes-taesd", "TAESD", "user", save_tiny_autoencoder(tmp_path / "own", serves=["Shapes"]))

    def model(name, kind):
        return ModelInfo(name, kind, "user", tmp_path / name)

    assert tiny_vae.serves(taesd, model("v15", "SD 1.x")) and tiny_vae.serves(taesd, model("v21", "SD 2.x (v)"))
    assert not tiny_vae.serves(taesd, model("xl", "SDXL")) and tiny_vae.serves(taesdxl, model("xl", "SDXL"))
    assert not tiny_vae.serves(taesdxl, model("v15", "SD 1.x"))
    # a model with its own VAE: only a tiny autoencoder that names it
    assert not tiny_vae.serves(taesd, model("shapes", "SD (custom)"))
    assert tiny_vae.serves(own, model("shapes", "SD (custom)")) and not tiny_vae.serves(own, model("v15", "SD 1.x"))
    assert tiny_vae.choose([taesdxl, taesd], model("v15", "SD 1.x")) is taesd


def test_xhat0_formula_recovers_the_clean_latent():
    """For samplers that do not report x̂₀, it is worked out from ε̂ and the step's noise level: given the
    true noise, x̂₀ is the clean latent exactly (ε, v and Karras sigmas alike)."""
    import torch

    config = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
              "steps_offset": 1}
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    for name, kind in (("DPM++ 2M", "epsilon"), ("DPM++ 2M Karras", "epsilon"), ("UniPC", "epsilon"),
                       ("DPM++ 2M Karras", "v_prediction"), ("TCD", "epsilon"), ("PNDM", "epsilon")):
        scheduler = build(name, {**config, "prediction_type": kind})
        scheduler.set_timesteps(10)
        t = scheduler.timesteps[3]
        noisy = scheduler.add_noise(x0, eps, t.reshape(1))
        if getattr(scheduler, "sigmas", None) is not None and hasattr(scheduler, "step_index"):
            scheduler._step_index = 4  # as after the step at index 3
            alpha_bar = 1 / (1 + float(scheduler.sigmas[3]) ** 2)
            noisy = alpha_bar ** 0.5 * x0 + (1 - alpha_bar) ** 0.5 * eps
        else:
            alpha_bar = float(scheduler.alphas_cumprod[int(t)])
        output = eps if kind == "epsilon" else alpha_bar ** 0.5 * eps - (1 - alpha_bar) ** 0.5 * x0
        clean = predicted_clean(scheduler, object(), output, t, noisy)
        assert torch.allclose(clean, x0, atol=1e-4), (name, kind)


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_the_last_steps_xhat0_is_the_image(engine, name):
    """Every sampler ends at (or within a hair of) its last x̂₀: the tracked prediction is the right one."""
    import torch

    engine.load()
    pipe = engine.loaded.pipe
    pipe.scheduler = build(name, engine.loaded.base_scheduler_config)
    clean = [None]
    with tracking_clean(pipe.scheduler, clean):
        latents = pipe("a red circle", num_inference_steps=4, guidance_scale=1.0, width=64, height=64,
                       generator=torch.Generator().manual_seed(2), output_type="latent").images
    assert "step" not in vars(pipe.scheduler)  # the sampler is itself again
    error = (clean[0] - latents).abs().max() / latents.abs().max()
    assert error < 0.01, float(error)


def test_previews_are_full_size_through_the_tiny_autoencoder(engine, user_tiny):
    frames = []
    result = engine.generate(GenerationRequest("a red circle", **SMALL), on_step=lambda s, t, p: frames.append(p))
    assert engine.loaded.tiny.path == user_tiny
    assert len(frames) == 3 and result.decoder is None  # previews only: the image itself is the VAE's
    assert {f.clean.size for f in frames} == {(64, 64)}  # the image's size, not the latent's
    assert {f.noisy.size for f in frames} == {(32, 32)}
    assert len({f.clean.tobytes() for f in frames}) == 3  # a new prediction every step


def test_previews_without_one_show_xhat0_through_the_linear_map(engine):
    frames = []
    engine.generate(GenerationRequest("a red circle", **SMALL), on_step=lambda s, t, p: frames.append(p))
    assert engine.loaded.tiny is None
    assert {f.clean.size for f in frames} == {(32, 32)}
    assert frames[-1].clean.tobytes() != frames[-1].noisy.tobytes()  # the prediction, not the noisy latent


def test_fast_decode_makes_the_image_and_says_so(tiny_model, user_tiny, tmp_path):
    proc = run_cli("generate", "a red circle", "--model", tiny_model, "--size", "64x64", "--steps", "2", "--seed", "4",
                   "--fast-decode", "--out", tmp_path, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["decoder"] == "taesd-tiny"
    image = Image.open(report["images"][0]["path"])
    assert image.size == (64, 64)
    assert json.loads(image.text["latent_studio"])["model"]["decoder"] == "taesd-tiny"
    assert "VAE Decoder: TAESD" in image.text["parameters"]
    plain = run_cli("generate", "a red circle", "--model", tiny_model, "--size", "64x64", "--steps", "2", "--seed", "4",
                    "--out", tmp_path / "plain", "--json")
    vae_image = Image.open(json.loads(plain.stdout)["images"][0]["path"])
    assert "VAE Decoder" not in vae_image.text["parameters"]
    assert not np.array_equal(np.asarray(vae_image), np.asarray(image))  # another decoder made these pixels


def test_fast_decode_without_a_tiny_autoencoder_exits_2_before_loading(tiny_model, tmp_path):
    proc = run_cli("generate", "a red circle", "--model", tiny_model, "--size", "64x64", "--fast-decode", "--out", tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "tiny autoencoder" in lines[0] and "tiny-sd" in lines[0]
    assert not list(tmp_path.glob("*.png"))


def test_fast_decode_message_names_the_download_for_stable_diffusion(tmp_path):
    sd15 = ModelInfo("v1-5", "SD 1.x", "user", tmp_path)
    xl = ModelInfo("xl", "SDXL", "user", tmp_path)
    assert "models download madebyollin/taesd`" in tiny_vae.missing_message(sd15)
    assert "madebyollin/taesdxl" in tiny_vae.missing_message(xl)
    engine = Engine(options=EngineOptions(device="cpu", fast_decode="require"))
    with pytest.raises(LatentStudioError, match="own latent space"):
        engine.generate(GenerationRequest("a red circle", **SMALL))  # the shipped model: its VAE is its own
    assert engine.loaded is None


def test_a_broken_tiny_autoencoder_is_a_clear_error(engine, user_tiny):
    (user_tiny / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    engine.options.fast_decode = "require"
    with pytest.raises(LatentStudioError, match="Cannot load the tiny autoencoder taesd-tiny"):
        engine.generate(GenerationRequest("a red circle", **SMALL))
    engine.options.fast_decode = "prefer"  # the window's setting: the image still comes, from the VAE
    frames = []
    result = engine.generate(GenerationRequest("a red circle", **SMALL), on_step=lambda s, t, p: frames.append(p))
    assert result.decoder is None and "Cannot load the tiny autoencoder taesd-tiny" in result.warnings[0]
    assert frames[0].clean.size == (32, 32)  # previews fell back to the linear map
    shutil.rmtree(user_tiny)


def test_the_window_setting_falls_back_to_the_vae_and_says_so(engine, tiny_model):
    engine.options.fast_decode = "prefer"
    result = engine.generate(GenerationRequest("a red circle", **SMALL))
    assert result.decoder is None
    assert result.warnings == [f"Fast decode is on, but no tiny autoencoder serves {tiny_model.name}: decoded with its VAE."]
