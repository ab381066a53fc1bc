"""LoRAs and embeddings as A1111 users write them: random LoRA files written in code (kohya and diffusers
formats) and embeddings, applied to the tiny pipeline and the shipped model through the engine, the CLI
and the metadata."""

import hashlib
import json
import os
import struct

import numpy as np
import pytest
from PIL import Image
from test_cli import run_cli
from test_shipped_model import SHIPPED
from tiny_models import build_tiny_pipeline, write_random_lora

from desktop import paths
from desktop.engine import loras
from desktop.engine.request import GenerationRequest
from desktop.errors import LatentStudioError
from desktop.gallery.store import Gallery

SMALL = {"steps": 2, "width": 64, "height": 64, "seed": 3}


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("tok") / "tok")


@pytest.fixture
def lora_dir(isolated_home):
    return paths.data_dir() / "loras"


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=np.float64)


def test_weight_zero_is_exactly_no_lora_and_the_change_grows_with_the_weight(engine, tiny_pipe, lora_dir):
    write_random_lora(lora_dir / "style.safetensors", tiny_pipe, "kohya")
    plain = pixels(engine.generate(GenerationRequest("a red circle", **SMALL)))
    zero = engine.generate(GenerationRequest("a red circle <lora:style:0>", **SMALL))
    assert np.array_equal(pixels(zero), plain) and zero.loras == []
    gaps = [np.abs(pixels(engine.generate(GenerationRequest(f"a red circle <lora:style:{w}>", **SMALL))) - plain).mean()
            for w in (0.3, 1.0)]
    assert 0 < gaps[0] < gaps[1], gaps
    assert np.array_equal(pixels(engine.generate(GenerationRequest("a red circle", **SMALL))), plain)  # off again


def test_diffusers_format_and_two_loras_combine_without_reloading_for_new_weights(engine, tiny_pipe, lora_dir):
    write_random_lora(lora_dir / "one.safetensors", tiny_pipe, "kohya", seed=1)
    write_random_lora(lora_dir / "two.safetensors", tiny_pipe, "diffusers", seed=2)
    one = pixels(engine.generate(GenerationRequest("x <lora:one:1>", **SMALL)))
    two = pixels(engine.generate(GenerationRequest("x <lora:two:1>", **SMALL)))
    both = engine.generate(GenerationRequest("x <lora:one:1> <lora:two:1>", **SMALL))
    assert [lora.name for lora in both.loras] == ["one", "two"]
    assert not np.array_equal(pixels(both), one) and not np.array_equal(pixels(both), two)
    state = engine.loaded.lora_state
    loaded = state.files_loaded
    engine.generate(GenerationRequest("x <lora:one:0.5> <lora:two:0.7:0.2>", **SMALL))
    assert state.files_loaded == loaded == 2  # only the weights changed: nothing was read again


def test_text_encoder_and_unet_weights_apart(engine, tiny_pipe, lora_dir):
    write_random_lora(lora_dir / "te.safetensors", tiny_pipe, "kohya", seed=4)
    plain = pixels(engine.generate(GenerationRequest("a red circle", **SMALL)))
    unet_only = pixels(engine.generate(GenerationRequest("a red circle <lora:te:0:1>", **SMALL)))
    te_only = pixels(engine.generate(GenerationRequest("a red circle <lora:te:1:0>", **SMALL)))
    assert not np.array_equal(unet_only, plain) and not np.array_equal(te_only, plain)
    assert not np.array_equal(unet_only, te_only)


def test_the_hash_is_a1111s_and_metadata_names_it(tiny_model, tiny_pipe, lora_dir, tmp_path):
    path = write_random_lora(lora_dir / "my style.safetensors", tiny_pipe, "kohya")
    data = path.read_bytes()
    start = 8 + struct.unpack("<Q", data[:8])[0]
    expected = hashlib.sha256(data[start:]).hexdigest()[:12]  # A1111: sha256 of what follows the header
    info = loras.read(path)
    assert info.short_hash == expected and info.format == "kohya" and info.context == 32

    proc = run_cli("generate", "a red circle <lora:my style:0.8>", "--model", tiny_model, "--size", "64",
                   "--steps", "2", "--seed", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    image = Image.open(json.loads(proc.stdout)["images"][0]["path"])
    assert image.text["parameters"].startswith("a red circle <lora:my style:0.8>\n")  # the tags stay
    assert f'Lora hashes: "my style: {expected}"' in image.text["parameters"]
    assert json.loads(image.text["latent_studio"])["networks"] == [{"kind": "lora", "name": "my style", "hash": expected}]
    from sd_parsers import ParserManager

    parsed = ParserManager().parse(image)
    assert "<lora:my style:0.8>" in parsed.prompts[0].value
    # sd-parsers splits A1111's settings line at every ':' and drops quoted fields such as A1111's own
    # `Lora hashes: "a: 1, b: 2"`, so the field is in what it read, not in its parsed metadata.
    assert f'Lora hashes: "my style: {expected}"' in parsed.raw_parameters["parameters"]

    listing = run_cli("loras", "--json")
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout) == [info.as_dict()]


def test_sshs_model_hash_metadata_wins(tmp_path):
    from safetensors.torch import save_file
    import torch

    path = tmp_path / "declared.safetensors"
    save_file({"lora_unet_x_attn2_to_k.lora_down.weight": torch.zeros(4, 768)}, str(path),
              metadata={"sshs_model_hash": "ABCDEF0123456789" * 4})
    info = loras.read(path)
    assert info.short_hash == "abcdef012345" and info.base == "SD 1.x"


def test_errors_name_the_problem(engine, tiny_pipe, lora_dir, tmp_path):
    from safetensors.torch import save_file
    import torch

    lora_dir.mkdir(parents=True)
    write_random_lora(lora_dir / "detail-tweaker.safetensors", tiny_pipe, "kohya")
    save_file({"lora_unet_a_attn2_to_k.lora_down.weight": torch.zeros(4, 2048),
               "lora_te1_b.lora_down.weight": torch.zeros(4, 768)}, str(lora_dir / "xl-style.safetensors"))
    save_file({"lora_unet_a.hada_w1_a": torch.zeros(4, 4)}, str(lora_dir / "loha.safetensors"))
    (lora_dir / "empty.safetensors").write_bytes(b"")
    (lora_dir / "noise.safetensors").write_bytes(os.urandom(2048))
    (lora_dir / "old.pt").write_bytes(b"pickle")
    cases = {
        "<lora:detail-tweak:1>": "Closest installed: detail-tweaker",
        "<lora:xl-style:1>": "is for SDXL; the model tiny-sd is SD (custom)",
        "<lora:loha:1>": "LyCORIS LoHa network, which is not supported",
        "<lora:empty:1>": "is empty (0 bytes)",
        "<lora:noise:1>": "not a valid .safetensors file",
        "<lora:detail-tweaker:lots>": "weight that is not a number",
    }
    for tag, message in cases.items():
        with pytest.raises(LatentStudioError, match=message.replace("(", r"\(").replace(")", r"\)")):
            engine.generate(GenerationRequest(f"x {tag}", **SMALL))
        assert engine.generate(GenerationRequest("x <lora:detail-tweaker:1>", **SMALL)).loras  # the next job runs
    with pytest.raises(LatentStudioError, match="pickled LoRA"):
        loras.read_header(lora_dir / "old.pt")
    proc = run_cli("generate", "x <lora:xl-style:1>", "--size", "64", "--steps", "1")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "SDXL" in proc.stderr


@pytest.mark.skipif(not (SHIPPED / "model_index.json").is_file(), reason="no shipped model")
def test_on_the_shipped_model(engine, lora_dir):
    from desktop.engine.models import ModelRegistry

    engine.registry = ModelRegistry()
    loaded = engine.load(str(SHIPPED))
    write_random_lora(lora_dir / "shapes.safetensors", loaded.pipe, "diffusers", scale=0.2)
    request = GenerationRequest("a red circle on a blue background", seed=7, model=str(SHIPPED))
    plain = pixels(engine.generate(request))
    assert np.array_equal(pixels(engine.generate(request.replace(prompt=request.prompt + " <lora:shapes:0>"))), plain)
    assert not np.array_equal(pixels(engine.generate(request.replace(prompt=request.prompt + " <lora:shapes:1>"))), plain)


def test_fused_output_matches_unfused_and_weights_come_back_exactly(engine, tiny_pipe, lora_dir):
    from desktop.engine import lora_apply

    write_random_lora(lora_dir / "a.safetensors", tiny_pipe, "kohya", seed=5)
    plain = pixels(engine.generate(GenerationRequest("a red circle", **SMALL)))
    fused = pixels(engine.generate(GenerationRequest("a red circle <lora:a:0.8>", **SMALL)))
    state = engine.loaded.lora_state
    assert state.fused
    lora_apply.unfuse(engine.loaded.pipe, state)  # the same LoRA, unfused: peft's own layers
    unfused = pixels(engine.generate(GenerationRequest("a red circle <lora:a:0.8>", **SMALL)))
    assert np.abs(fused - unfused).max() <= 2  # floating point order only
    for prompt in ("a red circle <lora:a:0.5>", "a red circle <lora:a:0>", "a red circle"):
        engine.generate(GenerationRequest(prompt, **SMALL))
    assert np.array_equal(pixels(engine.generate(GenerationRequest("a red circle", **SMALL))), plain)


def test_an_embedding_changes_only_its_own_token_and_is_recorded(engine, tiny_pipe, isolated_home):
    import torch
    from safetensors.torch import save_file

    from desktop.engine import conditioning

    folder = paths.data_dir() / "embeddings"
    folder.mkdir(parents=True)
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(9))  # two vectors, 32 wide
    save_file({"emb_params": vectors}, str(folder / "shinyemb.safetensors"))
    before = engine.generate(GenerationRequest("a red circle", **SMALL))
    pipe = engine.loaded.pipe
    encoded = conditioning.encode(pipe, "a red circle").hidden
    result = engine.generate(GenerationRequest("a red circle shinyemb", **SMALL))
    assert [e.name for e in result.embeddings] == ["shinyemb"]
    assert torch.equal(conditioning.encode(pipe, "a red circle").hidden, encoded)  # other prompts: unchanged
    ids = conditioning.chunks(pipe.tokenizer, "a red circle shinyemb")[0].tokens
    plain_ids = conditioning.chunks(pipe.tokenizer, "a red circle")[0].tokens
    added = [i for i in ids if i not in plain_ids]
    assert len(added) == 2  # the name stands for both of its vectors
    table = pipe.text_encoder.get_input_embeddings().weight
    assert torch.allclose(table[added], vectors)
    assert np.array_equal(pixels(engine.generate(GenerationRequest("a red circle", **SMALL))), pixels(before))
    expected = hashlib.sha256((folder / "shinyemb.safetensors").read_bytes()).hexdigest()[:12]
    with Gallery(paths.data_dir() / "g") as gallery:
        from desktop.service import GenerationService
        from desktop.settings import Settings

        service = GenerationService(Settings(model=engine.default_model, device="cpu", precision="fp32"), gallery)
        saved = service.run(service.accept(GenerationRequest("a red circle shinyemb", **SMALL))).saved[0]
    assert f'TI hashes: "shinyemb: {expected}"' in Image.open(saved.path).text["parameters"]
    save_file({"emb_params": torch.zeros(1, 768)}, str(folder / "wideemb.safetensors"))
    with pytest.raises(LatentStudioError, match="wideemb is for SD 1.x"):
        engine.generate(GenerationRequest("x wideemb", **SMALL))


def test_the_gallery_filters_by_lora(tiny_model, tiny_pipe, lora_dir):
    write_random_lora(lora_dir / "ink_wash.safetensors", tiny_pipe, "kohya")
    for prompt in ("a red circle <lora:ink_wash:0.7>", "a blue square", "a cat <lora:inkXwash:1>"):
        proc = run_cli("generate", prompt, "--model", tiny_model, "--size", "64", "--steps", "1", "--seed", "1")
        assert (proc.returncode == 0) == ("inkX" not in prompt), proc.stderr  # inkXwash is not installed
    listing = run_cli("gallery", "list", "--lora", "ink_wash", "--json")
    assert listing.returncode == 0, listing.stderr
    assert [r["prompt"] for r in json.loads(listing.stdout)] == ["a red circle <lora:ink_wash:0.7>"]
    with Gallery(paths.default_gallery_dir()) as gallery:
        assert gallery.loras() == ["ink_wash"]


def test_sdxl_embeddings_load_into_both_text_encoders(engine, isolated_home, tmp_path):
    import torch
    from safetensors.torch import save_file
    from tiny_models import build_tiny_sdxl_pipeline

    from desktop.engine import conditioning

    model = tmp_path / "tiny-sdxl"
    build_tiny_sdxl_pipeline(model / "_tok").save_pretrained(model, safe_serialization=True)
    folder = paths.data_dir() / "embeddings"
    folder.mkdir(parents=True)
    clip_l, clip_g = torch.randn(1, 32), torch.randn(1, 32) + 5
    save_file({"clip_l": clip_l, "clip_g": clip_g}, str(folder / "xlemb.safetensors"))
    result = engine.generate(GenerationRequest("a xlemb circle", model=str(model), **SMALL))
    assert [e.name for e in result.embeddings] == ["xlemb"]
    pipe = engine.loaded.pipe
    for tokenizer, encoder, vector in ((pipe.tokenizer, pipe.text_encoder, clip_l),
                                       (pipe.tokenizer_2, pipe.text_encoder_2, clip_g)):
        token = tokenizer.convert_tokens_to_ids("xlemb")
        assert torch.allclose(encoder.get_input_embeddings().weight[token], vector[0])
        assert token in conditioning.chunks(tokenizer, "a xlemb circle")[0].tokens


def test_a_kohya_sdxl_lora_reaches_the_unet_and_both_text_encoders(engine, lora_dir, tmp_path):
    from tiny_models import build_tiny_sdxl_pipeline

    model = tmp_path / "tiny-sdxl"
    pipe = build_tiny_sdxl_pipeline(model / "_tok")
    pipe.save_pretrained(model, safe_serialization=True)
    write_random_lora(lora_dir / "xl-all.safetensors", pipe, "kohya", seed=1)
    write_random_lora(lora_dir / "xl-te2.safetensors", pipe, "kohya", seed=2, scale=1.0, only=("text_encoder_2",))
    keys = loras.read_header(lora_dir / "xl-all.safetensors")[0]
    assert any(k.startswith("lora_te1_") for k in keys) and any(k.startswith("lora_te2_") for k in keys)
    request = GenerationRequest("a red circle", model=str(model), **SMALL)
    plain = pixels(engine.generate(request))
    assert np.array_equal(pixels(engine.generate(request.replace(prompt="a red circle <lora:xl-all:0>"))), plain)
    for name in ("xl-all", "xl-te2"):  # the second touches text_encoder_2 alone: the image still changes
        result = engine.generate(request.replace(prompt=f"a red circle <lora:{name}:1>"))
        assert [applied.name for applied in result.loras] == [name]
        assert not np.array_equal(pixels(result), plain), name
    assert np.array_equal(pixels(engine.generate(request)), plain)  # and everything comes back


def test_an_embedding_file_that_changes_is_read_again(engine, isolated_home):
    import torch
    from safetensors.torch import save_file

    folder = paths.data_dir() / "embeddings"
    folder.mkdir(parents=True)
    path = folder / "mood.safetensors"
    save_file({"emb_params": torch.randn(2, 32, generator=torch.Generator().manual_seed(1))}, str(path))
    first = engine.generate(GenerationRequest("a red circle mood", **SMALL))
    retrained = torch.randn(2, 32, generator=torch.Generator().manual_seed(2))
    save_file({"emb_params": retrained}, str(path))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # as a later save would
    second = engine.generate(GenerationRequest("a red circle mood", **SMALL))
    assert second.embeddings[0].short_hash != first.embeddings[0].short_hash
    pipe = engine.loaded.pipe
    ids = [pipe.tokenizer.convert_tokens_to_ids(t) for t in ("mood", "mood_1")]
    assert torch.allclose(pipe.text_encoder.get_input_embeddings().weight[ids], retrained)
    assert not np.array_equal(pixels(second), pixels(first))
    save_file({"emb_params": torch.randn(3, 32)}, str(path))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2 * 10**9))
    with pytest.raises(LatentStudioError, match="changed its number or width of vectors"):
        engine.generate(GenerationRequest("a red circle mood", **SMALL))
