import os
import shutil
import sys
from pathlib import Path

import pytest

from desktop import paths
from desktop.engine.generation import Engine, EngineOptions
from desktop.engine.models import ModelRegistry
from desktop.engine.request import GenerationRequest
from desktop.errors import LatentStudioError


def test_no_model_installed_says_how_to_add_one(monkeypatch, tmp_path):
    monkeypatch.setenv("LATENT_STUDIO_RESOURCES", str(tmp_path / "bare install"))  # no shipped model
    with pytest.raises(LatentStudioError, match="No model is installed"):
        ModelRegistry().resolve(None)


def test_user_models_dir_and_extra_folders_are_listed(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENT_STUDIO_RESOURCES", str(tmp_path / "bare install"))  # else the shipped one is default
    shutil.copytree(tiny_model, paths.user_models_dir() / "mine")
    folder = tmp_path / "A1111 models"
    shutil.copytree(tiny_model, folder / "theirs")
    models = {m.name: m for m in ModelRegistry(extra_folders=[folder]).list()}
    assert models["mine"].source == "user" and models["theirs"].source == "folder"
    assert ModelRegistry(extra_folders=[folder]).resolve("THEIRS").path == folder / "theirs"
    assert ModelRegistry().default().name == "mine"


def test_hugging_face_cache_repos_are_listed_and_load(tiny_model, engine):
    hub = Path(os.environ["HF_HUB_CACHE"])
    repo = hub / "models--someone--tiny-sd"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_model, repo / "snapshots" / commit, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    registry = ModelRegistry()
    info = registry.resolve("someone/tiny-sd")
    assert info.source == "hf-cache"
    result = Engine(registry, EngineOptions(device="cpu")).generate(
        GenerationRequest("a cat", model="someone/tiny-sd", seed=1, width=64, height=64, steps=1))
    assert result.model.name == "someone/tiny-sd"


def test_unknown_model_lists_what_is_available(tiny_model):
    shutil.copytree(tiny_model, paths.user_models_dir() / "mine")
    with pytest.raises(LatentStudioError, match="Available: .*mine"):
        ModelRegistry().resolve("nope")


def test_folder_without_model_index_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LatentStudioError, match="model_index.json"):
        ModelRegistry().resolve(str(tmp_path / "empty"))


def test_broken_weights_are_one_clear_error_naming_the_path(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not really weights")
    engine = Engine(options=EngineOptions(device="cpu"))
    with pytest.raises(LatentStudioError, match=str(broken)):
        engine.generate(GenerationRequest("x", model=str(broken), width=64, height=64, steps=1))
    # the engine still works afterwards
    assert engine.generate(GenerationRequest("x", model=str(tiny_model), seed=1, width=64, height=64, steps=1)).images


def test_a_loaded_text_encoder_runs_its_own_weights_not_hub_kernels(tiny_model):
    """transformers >= 5.25 kernelizes every model it loads with kernels from the Hub unless told not to:
    importing the app turns that off for every loader, the engine's and the demo's alike (a fresh process,
    so nothing set earlier counts), and a value the user sets is kept."""
    import subprocess

    script = ("import os, desktop; from desktop.demo.finetune import load_components; "
              f"print(os.environ['USE_HUB_KERNELS'], load_components(__import__('pathlib').Path({str(tiny_model)!r}))[1].use_kernels)")
    env = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}
    fresh = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert fresh.stdout.split() == ["NO", "False"], fresh.stderr[-2000:]
    chosen = subprocess.run([sys.executable, "-c", "import os, desktop; print(os.environ['USE_HUB_KERNELS'])"],
                            env={**env, "USE_HUB_KERNELS": "YES"}, capture_output=True, text=True, timeout=300)
    assert chosen.stdout.split() == ["YES"], chosen.stderr[-2000:]
    engine = Engine(options=EngineOptions(device="cpu"))
    engine.generate(GenerationRequest("x", model=str(tiny_model), seed=1, width=64, height=64, steps=1))
    assert not getattr(engine.loaded.pipe.text_encoder, "use_kernels", False)


def test_non_text_to_image_pipeline_is_refused(tmp_path):
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "AudioLDMPipeline"}')
    with pytest.raises(LatentStudioError, match="AudioLDMPipeline"):
        Engine(options=EngineOptions(device="cpu")).load(str(folder))


def test_a_failed_lazy_import_names_its_cause(tmp_path, monkeypatch):
    """diffusers reports a module that failed to import as "Failed to import X because of the following
    error (...):" with the cause on the next line: the message a person sees must carry that cause."""
    from diffusers.utils.import_utils import _LazyModule

    from desktop.engine.models import _first_line

    package = tmp_path / "lazy_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import sys\nfrom diffusers.utils.import_utils import _LazyModule\n"
        "sys.modules[__name__] = _LazyModule(__name__, __file__, {'broken': ['Thing']}, module_spec=__spec__)\n")
    (package / "broken.py").write_text("raise FileNotFoundError('Cannot load dependency data, is `kernels` installed?')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import lazy_pkg

        assert isinstance(lazy_pkg, _LazyModule)
        with pytest.raises(RuntimeError) as failure:
            lazy_pkg.Thing
    finally:
        sys.modules.pop("lazy_pkg", None)
    message = _first_line(failure.value)
    assert message.startswith("Failed to import lazy_pkg.broken") and message.endswith("is `kernels` installed?")
