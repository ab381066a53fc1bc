"""Test isolation: no network, no real user dirs, Qt offscreen; tiny models built once per session."""

import os
import sys
import tempfile
from pathlib import Path

# Before anything imports Qt or huggingface_hub (which reads these at import time).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_HF = tempfile.mkdtemp(prefix="latent-test-hf-")
os.environ["HF_HOME"] = _HF
os.environ["HF_HUB_CACHE"] = os.path.join(_HF, "hub")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402

from tiny_models import save_tiny_model  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "home dir ünïcode"
    monkeypatch.setenv("LATENT_STUDIO_HOME", str(home))
    monkeypatch.delenv("LATENT_STUDIO_DEVICE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def other_tiny_model(tmp_path_factory) -> Path:
    from tiny_models import build_tiny_pipeline

    folder = tmp_path_factory.mktemp("models") / "other-sd"
    build_tiny_pipeline(folder / "_tok", seed=7).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture
def engine(tiny_model):
    """An engine on the CPU in fp32; LATENT_STUDIO_TEST_DEVICE=cuda runs the same tests on a GPU."""
    from desktop.engine.generation import Engine, EngineOptions

    device = os.environ.get("LATENT_STUDIO_TEST_DEVICE", "cpu")
    return Engine(options=EngineOptions(device=device, precision="fp32"), default_model=str(tiny_model))
