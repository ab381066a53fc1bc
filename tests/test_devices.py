import pytest

from desktop.engine import devices
from desktop.engine.devices import Placement, pick_device, pick_precision
from desktop.errors import LatentStudioError


@pytest.fixture
def hardware(monkeypatch):
    def set_(cuda=False, mps=False, bf16=False):
        monkeypatch.setattr(devices, "cuda_available", lambda: cuda)
        monkeypatch.setattr(devices, "mps_available", lambda: mps)
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: bf16)

    return set_


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(hardware, cuda, mps, expected):
    hardware(cuda=cuda, mps=mps)
    assert pick_device() == expected
    assert pick_device("auto") == expected


def test_forced_device_wins(hardware):
    hardware(cuda=True, mps=True)
    assert pick_device("cpu") == "cpu"
    assert pick_device("MPS") == "mps"


def test_environment_variable_forces_device(hardware, monkeypatch):
    hardware(cuda=True)
    monkeypatch.setenv("LATENT_STUDIO_DEVICE", "cpu")
    assert pick_device() == "cpu"
    assert pick_device("cuda") == "cuda"  # an explicit argument beats the environment


@pytest.mark.parametrize("device, message", [("cuda", "CUDA"), ("mps", "MPS"), ("tpu", "Unknown device")])
def test_unavailable_device_is_a_clear_error(hardware, device, message):
    hardware()
    with pytest.raises(LatentStudioError, match=message):
        pick_device(device)


@pytest.mark.parametrize(
    "device, bf16, expected",
    [("cuda", False, "fp16"), ("mps", False, "fp16"), ("cpu", True, "bf16"), ("cpu", False, "fp32")],
)
def test_precision_policy(hardware, device, bf16, expected):
    hardware(bf16=bf16)
    assert pick_precision(device) == expected


def test_precision_override_and_bad_value(hardware):
    hardware(cuda=True)
    assert pick_precision("cuda", "fp32") == "fp32"
    assert Placement.choose("auto", "bf16") == Placement("cuda", "bf16")
    with pytest.raises(LatentStudioError, match="precision"):
        pick_precision("cpu", "int4")


def test_a_models_own_precision_beats_the_rule_not_the_user(hardware):
    hardware(bf16=True)
    assert pick_precision("cpu", "auto", "fp32") == "fp32"  # measured by the model's maker
    assert pick_precision("cpu", None, "") == "bf16"  # the model names none: the rule
    assert pick_precision("cpu", "bf16", "fp32") == "bf16"  # the user's explicit choice wins
    assert pick_precision("cpu", "auto", "fp64") == "bf16"  # a name the app does not know is ignored
    assert Placement.choose("cpu", "auto", "fp32") == Placement("cpu", "fp32")


@pytest.mark.parametrize("text, expected", [
    ("flags\t\t: fpu sse2 avx2 fma\n", False),  # AVX2 only: bf16 is emulated
    ("flags\t\t: fpu avx2 avx512f avx512_bf16\n", True),
    ("flags\t\t: fpu avx512f amx_bf16 amx_tile\n", True),
    ("Features\t: fp asimd bf16 i8mm\n", True),  # Arm
    ("Features\t: fp asimd\nmodel name\t: bf16 lookalike\n", False),  # only flag lines count
])
def test_cpu_bf16_detection_parses_cpuinfo(text, expected):
    assert devices.cpuinfo_has_bf16(text) is expected


def test_cpu_bf16_detection_agrees_with_this_machine():
    import platform
    import re

    if platform.system() != "Linux":
        pytest.skip("reads /proc/cpuinfo")
    flags = open("/proc/cpuinfo").read()
    expected = bool(re.search(r"^flags.*\b(avx512_bf16|amx_bf16)\b", flags, re.M))
    assert devices.cpu_has_native_bf16() is expected
