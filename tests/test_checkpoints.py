"""Single-file checkpoints: offline loading of a full-size SD 1.5 file, detection, safety, broken files."""

import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from ldm_checkpoint import write_sd2_checkpoint, write_sd15_checkpoint
from safetensors.torch import save_file
from test_cli import ROOT, run_cli

from desktop import paths
from desktop.engine import checkpoints
from desktop.engine.checkpoints import identify

NO_NETWORK = """
import socket, runpy, sys
def refuse(*args, **kwargs):
    raise OSError("network access attempted during an offline test")
socket.socket.connect = refuse
socket.create_connection = refuse
sys.argv = ["main.py", *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def generate_offline(model: Path, out: Path, *flags: str) -> dict:
    """`generate --json` on a checkpoint in a subprocess that any network access fails; its report."""
    proc = subprocess.run([sys.executable, "-c", NO_NETWORK, "generate", "a photo of a cat", "--model", str(model),
                           "--size", "64", "--steps", "1", "--seed", "1", *flags, "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


SDXL_MEMORY = 16 * 2**30  # writing peaks at 15 GB, generating in bf16 at 14 GB (fp32: 19 GB)


def test_a_full_size_sdxl_base_file_generates_offline(tmp_path):
    """SDXL base in the original layout (CLIP-L and OpenCLIP bigG under conditioner.embedders, label_emb)
    assembles offline and makes an image. Written and run in subprocesses (7 GB on disk), first in this
    file so the test process is still small, and in bf16, which needs 5 GB less than fp32."""
    import psutil

    if psutil.virtual_memory().available < SDXL_MEMORY:
        pytest.skip(f"needs {SDXL_MEMORY / 2**30:.0f} GB of free memory for a full-size SDXL")
    path = tmp_path / "random-sdxl.safetensors"
    write = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from ldm_checkpoint import "
             f"write_sdxl_checkpoint as w; from pathlib import Path; "
             f"w(Path({str(path)!r}), Path({str(paths.shipped_configs_dir() / 'sdxl-base')!r}))")
    made = subprocess.run([sys.executable, "-c", write], capture_output=True, text=True, timeout=900)
    assert made.returncode == 0, made.stderr[-2000:]
    assert identify(path) is checkpoints.SDXL
    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
    assert {"model.diffusion_model.label_emb.0.0.weight", "conditioner.embedders.1.model.text_projection",
            "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight"} <= keys
    report = generate_offline(path, tmp_path / "out", "--precision", "bf16")
    assert report["model"]["kind"] == "SDXL" and Image.open(report["images"][0]["path"]).size == (64, 64)
    path.unlink()  # 7 GB


@pytest.fixture(scope="session")
def sd15_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints")
    return write_sd15_checkpoint(folder / "random-sd15.safetensors", paths.shipped_configs_dir() / "sd15")


def test_shipped_clip_tokenizer_gives_the_known_ids():
    assert checkpoints.tokenizer()("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(checkpoints.tokenizer()) == 49408
    assert checkpoints.tokenizer("!").pad_token_id == 0  # SD 2 / SDXL's second tokenizer pad with "!"


def test_a_full_size_sd15_file_generates_offline(sd15_file, tmp_path):
    report = generate_offline(sd15_file, tmp_path / "out")
    assert report["model"]["kind"] == "SD 1.x" and Path(report["images"][0]["path"]).is_file()


@pytest.fixture(scope="session")
def sd2_v_file(tmp_path_factory) -> Path:
    """A fine-tune's name says nothing; its modelspec says v (as SD 2.1-768 derivatives' often do)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return write_sd2_checkpoint(folder / "my-finetune.safetensors", paths.shipped_configs_dir() / "sd2-768-v",
                                {"modelspec.prediction_type": "v"})


def test_a_full_size_sd2_768_v_file_generates_offline(sd2_v_file, tmp_path):
    report = generate_offline(sd2_v_file, tmp_path / "out")
    assert report["model"]["kind"] == "SD 2.x (768, v)" and Path(report["images"][0]["path"]).is_file()
    pipe = checkpoints.load_single_file(sd2_v_file, torch.float16)
    assert pipe.scheduler.config.prediction_type == "v_prediction" and pipe.unet.config.upcast_attention
    text = getattr(pipe.text_encoder, "text_model", pipe.text_encoder)  # newer transformers drop that level
    assert len(text.encoder.layers) == 23  # the penultimate layer, as SD 2 conditions
    with safe_open(str(sd2_v_file), "pt") as f:
        merged = f.get_tensor("cond_stage_model.model.transformer.resblocks.5.attn.in_proj_weight")
        attention = text.encoder.layers[5].self_attn
        assert torch.equal(torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]), merged)
        assert torch.equal(pipe.unet.up_blocks[3].attentions[2].transformer_blocks[0].attn2.to_k.weight,
                           f.get_tensor("model.diffusion_model.output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight"))


def test_single_file_weights_land_in_the_right_places(sd15_file):

    pipe = checkpoints.load_single_file(sd15_file, torch.float16)
    with safe_open(str(sd15_file), "pt") as f:
        assert torch.equal(pipe.unet.conv_in.weight, f.get_tensor("model.diffusion_model.input_blocks.0.0.weight"))
        assert torch.equal(pipe.unet.up_blocks[3].attentions[2].transformer_blocks[0].attn2.to_k.weight,
                           f.get_tensor("model.diffusion_model.output_blocks.11.1.transformer_blocks.0.attn2.to_k.weight"))
        q = f.get_tensor("first_stage_model.decoder.mid.attn_1.q.weight")
        assert torch.equal(pipe.vae.decoder.mid_block.attentions[0].to_q.weight, q.reshape(q.shape[:2]))
        token = f.get_tensor("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight")
        assert torch.equal(pipe.text_encoder.get_input_embeddings().weight, token)


def test_model_folders_list_checkpoints_with_kind_and_size(sd15_file, tmp_path):
    a1111 = tmp_path / "stable-diffusion-webui" / "models" / "Stable-diffusion"
    (a1111 / "sub").mkdir(parents=True)
    os.link(sd15_file, a1111 / "sub" / "my model.safetensors")
    (a1111 / "broken.safetensors").write_bytes(b"")
    from desktop.settings import Settings, save_settings

    save_settings(Settings(model_folders=[str(a1111)]))
    proc = run_cli("models", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {m["name"]: m for m in json.loads(proc.stdout)}
    assert listed["my model"]["kind"] == "SD 1.x" and listed["my model"]["size_bytes"] == sd15_file.stat().st_size
    assert "broken" not in listed


def sparse_safetensors(path: Path, shapes: dict, metadata: dict | None = None, values: dict | None = None) -> Path:
    """A real safetensors file (header + data region) without writing the data: a sparse file.
    `values` ({name: fp16 numpy array}) are written for real, at their place."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 2
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + offset)
        for name, array in (values or {}).items():
            fh.seek(8 + len(raw) + header[name]["data_offsets"][0])
            fh.write(array.astype("<f2").tobytes())
    return path


SDXL_SHAPES = {
    "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
    "model.diffusion_model.label_emb.0.0.weight": [1280, 2816],
    "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": [640, 2048],
    "model.diffusion_model.middle_block.1.transformer_blocks.9.attn2.to_k.weight": [1280, 2048],
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": [49408, 768],
    "conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc2.weight": [768, 3072],
    "conditioner.embedders.1.model.token_embedding.weight": [49408, 1280],
    "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight": [3840, 1280],
    "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": [1280],
    "conditioner.embedders.1.model.text_projection": [1280, 1280],
    "first_stage_model.decoder.conv_out.weight": [3, 128, 3, 3],
}
SD2_SHAPES = {
    "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 1024],
    "cond_stage_model.model.token_embedding.weight": [49408, 1024],
    "cond_stage_model.model.transformer.resblocks.22.attn.in_proj_weight": [3072, 1024],
}


def test_architectures_are_detected_from_tensor_names_and_shapes(tmp_path):
    assert identify(sparse_safetensors(tmp_path / "sdxl.safetensors", SDXL_SHAPES)).kind == "SDXL"
    # named like an SD 1.5 file, but its tensors say SDXL: the tensors win
    assert identify(sparse_safetensors(tmp_path / "v1-5-pruned.safetensors", SDXL_SHAPES)).kind == "SDXL"
    assert identify(sparse_safetensors(tmp_path / "sd21-base.safetensors", SD2_SHAPES)).kind == "SD 2.x"
    assert identify(sparse_safetensors(tmp_path / "sd21-768.safetensors", SD2_SHAPES)).kind == "SD 2.x (768, v)"
    plain = sparse_safetensors(tmp_path / "my-sd2.safetensors", SD2_SHAPES)
    plain.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert identify(plain).kind == "SD 2.x (768, v)"


V_BIAS = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"


@pytest.mark.parametrize("name, metadata, bias_std, expected", [
    ("fine-tune-768.safetensors", {"modelspec.prediction_type": "epsilon"}, 0.2, "SD 2.x"),  # the file says so
    ("plain-name.safetensors", {"modelspec.prediction_type": "v"}, 0.01, "SD 2.x (768, v)"),
    ("sd21-768-eps-finetune.safetensors", None, 0.03, "SD 2.x"),  # "768" in the name, the weights say epsilon
    ("my-v-model.safetensors", None, 0.12, "SD 2.x (768, v)"),  # no "768", the weights say v
])
def test_sd2_v_prediction_from_modelspec_then_the_weights(tmp_path, name, metadata, bias_std, expected):
    import numpy as np

    rng = np.random.default_rng(0)
    bias = rng.normal(0, 1, 320)
    bias = bias / bias.std() * bias_std
    path = sparse_safetensors(tmp_path / name, {**SD2_SHAPES, V_BIAS: [320]}, metadata, {V_BIAS: bias})
    assert identify(path).kind == expected


def test_sdxl_v_prediction_zero_snr_checkpoints_are_detected(tmp_path):
    marked = sparse_safetensors(tmp_path / "noob-vpred.safetensors", {**SDXL_SHAPES, "v_pred": [0], "ztsnr": [0]})
    assert identify(marked).kind == "SDXL (v, zero terminal SNR)"
    declared = sparse_safetensors(tmp_path / "xl.safetensors", SDXL_SHAPES, {"modelspec.prediction_type": "v"})
    assert identify(declared).kind == "SDXL (v, zero terminal SNR)"
    assert identify(sparse_safetensors(tmp_path / "plain-xl.safetensors", SDXL_SHAPES)).kind == "SDXL"


def test_inpainting_checkpoints_are_recognised_by_their_nine_input_channels(tmp_path):
    nine = {"model.diffusion_model.input_blocks.0.0.weight": [320, 9, 3, 3]}
    sd2 = identify(sparse_safetensors(tmp_path / "sd2-inpainting.safetensors", {**SD2_SHAPES, **nine}))
    xl = identify(sparse_safetensors(tmp_path / "xl-inpainting.safetensors", {**SDXL_SHAPES, **nine}))
    assert (sd2.kind, sd2.config, sd2.pipeline) == ("SD 2.x inpainting", "sd2-inpaint", "StableDiffusionInpaintPipeline")
    assert (xl.kind, xl.pipeline) == ("SDXL inpainting", "StableDiffusionXLInpaintPipeline")
    config = paths.shipped_configs_dir() / "sdxl-inpaint"
    assert json.loads((config / "unet" / "config.json").read_text())["in_channels"] == 9
    assert json.loads((config / "model_index.json").read_text())["_class_name"] == "StableDiffusionXLInpaintPipeline"


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    (lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 2132625894\n"),
     "Git LFS pointer"),
    (lambda p: p.write_bytes(os.urandom(4096)), "not a valid .safetensors"),
    (lambda p: torch.save({"w": torch.zeros(2)}, p), "pickle (PyTorch .ckpt) file with a .safetensors name"),
    (lambda p: p.write_bytes(sparse_safetensors(p, SDXL_SHAPES).read_bytes()[:5000]), "cut short"),
    (lambda p: sparse_safetensors(p, {**SD2_SHAPES, "model.diffusion_model.input_blocks.0.0.weight": [320, 9, 3, 3]}),
     "is an inpainting model: it repaints a masked part of an image and cannot make an image from text"),
    (lambda p: sparse_safetensors(p, {"lora_unet_down_blocks_0.lora_down.weight": [4, 320]}), "LoRA"),
    (lambda p: sparse_safetensors(p, {"conditioner.embedders.0.model.token_embedding.weight": [49408, 1280],
                                      "model.diffusion_model.input_blocks.0.0.weight": [384, 4, 3, 3]}), "refiner"),
])
def test_broken_files_get_one_clear_line_and_exit_2(tmp_path, make, message):
    path = tmp_path / "model.safetensors"
    make(path)
    proc = run_cli("generate", "x", "--model", path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "model.safetensors" in lines[0], lines


def test_a_file_that_does_not_fit_its_architecture_is_a_clear_error(tmp_path):
    wrong = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3, dtype=torch.float16),
             "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(8, 768),
             "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(10, 8)}
    path = tmp_path / "odd.safetensors"
    save_file(wrong, str(path))
    proc = run_cli("generate", "x", "--model", path, "--size", "64", "--steps", "1")
    assert proc.returncode == 2 and "do not fit" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickles_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"state_dict": _Evil(str(marker))}))
    proc = run_cli("generate", "x", "--model", evil)
    assert proc.returncode == 2 and "can run any code" in proc.stderr and "models convert" in proc.stderr
    proc = run_cli("models", "convert", evil)
    assert proc.returncode == 2 and "more than plain tensors" in proc.stderr, proc.stderr
    renamed = tmp_path / "evil.safetensors"
    renamed.write_bytes(evil.read_bytes())
    assert run_cli("generate", "x", "--model", renamed).returncode == 2
    assert not marker.exists()
    assert not list(tmp_path.glob("*.partial"))


def test_converting_a_plain_pickle_checkpoint(tmp_path):
    tensors = {"model.diffusion_model.input_blocks.0.0.weight": torch.randn(320, 4, 3, 3),
               "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.randn(320, 768),
               "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.randn(4, 768)}
    source = tmp_path / "old model.ckpt"
    torch.save({"state_dict": tensors, "global_step": 1000}, source)
    proc = run_cli("models", "convert", source)
    assert proc.returncode == 0, proc.stderr
    converted = Path(proc.stdout.strip())
    assert converted == tmp_path / "old model.safetensors" and identify(converted).kind == "SD 1.x"
    from safetensors.torch import load_file

    assert torch.equal(load_file(converted)["model.diffusion_model.input_blocks.0.0.weight"],
                       tensors["model.diffusion_model.input_blocks.0.0.weight"])
    assert run_cli("models", "convert", source).returncode == 2  # never overwrites


def test_a_model_folder_naming_foreign_code_is_refused(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "sneaky"
    shutil.copytree(tiny_model, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["evil_module", "Scheduler"]
    (folder / "model_index.json").write_text(json.dumps(index))
    marker = tmp_path / "RAN"
    (folder / "evil_module.py").write_text(f"open({str(marker)!r}, 'w')\n")
    proc = run_cli("generate", "x", "--model", folder, "--size", "64", "--steps", "1")
    assert proc.returncode == 2 and "code outside diffusers and transformers" in proc.stderr, proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("repo, message", [("someone/some-model", "offline"), ("not a repo id", "not a Hugging Face repo id")])
def test_download_offline_is_a_clear_message(repo, message):
    proc = run_cli("models", "download", repo)  # HF_HUB_OFFLINE=1 in tests: nothing reaches the network
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
