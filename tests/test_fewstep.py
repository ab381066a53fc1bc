"""Few-step models (Turbo, LCM, Lightning, Hyper-SD, TCD) recognised and run with their own settings."""

import json
import shutil

from test_checkpoints import SDXL_SHAPES, sparse_safetensors
from test_cli import run_cli
from tiny_models import build_tiny_pipeline, write_random_lora

from desktop import paths
from desktop.engine import fewstep
from desktop.engine.request import GenerationRequest

SMALL = dict(width=64, height=64, seed=3)


def test_names_and_metadata_of_single_files(tmp_path):
    cases = [
        ("sd_xl_turbo_1.0_fp16.safetensors", None, ("Turbo", "Euler a", 1, 0.0, True)),
        ("sdxl_lightning_2step.safetensors", None, ("Lightning", "Euler", 2, 0.0, True)),
        ("Hyper-SDXL-8steps.safetensors", None, ("Hyper-SD", "TCD", 8, 0.0, True)),
        ("dreamshaper_lcm.safetensors", None, ("LCM", "LCM", 4, 1.5, False)),
        ("model.safetensors", {"modelspec.title": "SDXL Turbo"}, ("Turbo", "Euler a", 1, 0.0, True)),
        ("model2.safetensors", {"modelspec.architecture": "stable-diffusion-xl-v1-base/lcm"}, ("LCM", "LCM", 4, 1.5, False)),
        ("tcd-sdxl.safetensors", None, ("TCD", "TCD", 4, 0.0, False)),
    ]
    for name, metadata, expected in cases:
        profile = fewstep.recognise(sparse_safetensors(tmp_path / name, SDXL_SHAPES, metadata))
        assert profile is not None, name
        assert (profile.family, profile.scheduler, profile.steps, profile.guidance, profile.trailing) == expected, name
    for ordinary in ("sd_xl_base_1.0.safetensors", "my_hypernetwork_mix.safetensors", "lcmodel.safetensors"):
        assert fewstep.recognise(sparse_safetensors(tmp_path / ordinary, SDXL_SHAPES)) is None, ordinary
    assert fewstep.PROFILES["turbo"].note == "Turbo: 1–4 steps, CFG off"


def folder_model(tmp_path, name: str, scheduler=None):
    pipe = build_tiny_pipeline(tmp_path / "_tok")
    if scheduler is not None:
        pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
    pipe.save_pretrained(tmp_path / name, safe_serialization=True)
    return tmp_path / name


def test_folders_by_their_scheduler_class_or_name(tmp_path):
    from diffusers import LCMScheduler, TCDScheduler

    assert fewstep.recognise(folder_model(tmp_path, "my-model", LCMScheduler)).family == "LCM"
    assert fewstep.recognise(folder_model(tmp_path, "other-model", TCDScheduler)).family == "TCD"
    assert fewstep.recognise(folder_model(tmp_path, "sd-turbo")).family == "Turbo"
    assert fewstep.recognise(folder_model(tmp_path, "plain")) is None


def test_a_turbo_model_runs_its_own_way_until_the_user_says_otherwise(engine, tmp_path):
    model = folder_model(tmp_path, "tiny-sd-turbo")
    result = engine.generate(GenerationRequest("a red circle", model=str(model), **SMALL))
    assert (result.request.steps, result.request.guidance, result.request.scheduler) == (1, 0.0, "Euler a")
    assert engine.loaded.pipe.scheduler.config.timestep_spacing == "trailing"
    assert any("Turbo: 1–4 steps, CFG off" in w for w in result.warnings)
    chosen = engine.generate(GenerationRequest("a red circle", model=str(model), steps=3, guidance=2.0,
                                               scheduler="DDIM", **SMALL))
    assert (chosen.request.steps, chosen.request.guidance, chosen.request.scheduler) == (3, 2.0, "DDIM")
    assert not any("Turbo" in w for w in chosen.warnings)


def test_an_lcm_lora_makes_an_ordinary_model_few_step(engine, tiny_model, isolated_home):
    folder = paths.data_dir() / "loras"
    write_random_lora(folder / "lcm-lora-sdv1-5.safetensors", build_tiny_pipeline(paths.data_dir() / "tok"), scale=0.01)
    result = engine.generate(GenerationRequest("a red circle <lora:lcm-lora-sdv1-5:1>", **SMALL))
    assert (result.request.steps, result.request.guidance, result.request.scheduler) == (4, 1.5, "LCM")
    plain = engine.generate(GenerationRequest("a red circle", **SMALL))
    assert plain.request.scheduler != "LCM"  # without the LoRA, the model's own defaults again


def test_models_lists_the_profile(tmp_path, isolated_home):
    shutil.copytree(folder_model(tmp_path, "tiny-sd-turbo"), paths.user_models_dir() / "tiny-sd-turbo")
    proc = run_cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {m["name"]: m for m in json.loads(proc.stdout)}
    assert listed["tiny-sd-turbo"]["fast"] == "Turbo: 1–4 steps, CFG off"
    assert listed["latent-shapes"]["fast"] is None
