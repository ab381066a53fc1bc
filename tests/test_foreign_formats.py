"""Every tool's PNG read right, from fixtures written here in each tool's documented format, and
hostile files that cannot tie the reader up."""

import gzip
import json
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from desktop.gallery import scan
from desktop.gallery.metadata import read_image_metadata, read_metadata
from desktop.gallery.pngchunks import read_png_info
from desktop.gallery.records import ImageFilter
from desktop.gallery.store import Gallery

FIELDS = ("prompt", "negative_prompt", "steps", "guidance", "seed", "width", "height", "scheduler", "model")
BIG_SEED = 6952411511246973023  # a Fooocus seed: past 2^32, below 2^63
HUGE_SEED = 18446744073709551557  # a ComfyUI seed past 2^63: SQLite cannot hold it as it is


def png(path: Path, chunks: dict, size=(64, 48), mode="RGB", itxt=False) -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        (info.add_itxt if itxt else info.add_text)(key, value)
    Image.new(mode, size, (90, 120, 200, 255)[: len(mode)]).save(path, pnginfo=info)
    return path


def settings(meta) -> tuple:
    return tuple(getattr(meta.request, name) for name in FIELDS)


# --- each format ---------------------------------------------------------------------------------

FOOOCUS = {
    "prompt": "a lighthouse at dusk", "negative_prompt": "blurry, lowres", "styles": "['Fooocus V2', 'Fooocus Sharp']",
    "performance": "Speed", "steps": 30, "resolution": "(1152, 896)", "guidance_scale": 4.5, "sharpness": 2,
    "adm_guidance": "(1.5, 0.8, 0.3)", "base_model": "juggernautXL_v8Rundiffusion.safetensors",
    "refiner_model": "None", "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras", "seed": str(BIG_SEED),
    "full_prompt": ["a lighthouse at dusk, cinematic"], "metadata_scheme": "fooocus", "version": "Fooocus v2.5.5",
}


def test_fooocus_json_fills_every_field_and_notes_what_did_not_map():
    meta = read_metadata({"parameters": json.dumps(FOOOCUS)})
    assert meta.source == "fooocus"
    assert settings(meta) == ("a lighthouse at dusk", "blurry, lowres", 30, 4.5, BIG_SEED, 1152, 896, None,
                              "juggernautXL_v8Rundiffusion")
    assert any("dpmpp_2m_sde" in n for n in meta.notes) and any("Fooocus Sharp" in n for n in meta.notes)
    request, dropped = meta.request.keep_valid()
    assert request.seed == BIG_SEED and dropped == []  # 64-bit seeds are kept, so the image can be remade
    plain = read_metadata({"parameters": json.dumps({**FOOOCUS, "sampler": "dpmpp_2m", "styles": "[]"})})
    assert plain.request.scheduler == "DPM++ 2M Karras" and plain.notes == ()


def test_fooocus_a1111_scheme_is_read_as_infotext():
    text = ("a fox\nNegative prompt: fog\nSteps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 4, "
            f"Seed: {BIG_SEED}, Size: 896x1152, Model: juggernautXL, Version: Fooocus v2.5.5")
    meta = read_metadata({"parameters": text})
    assert meta.source == "fooocus"
    assert settings(meta) == ("a fox", "fog", 20, 4.0, BIG_SEED, 896, 1152, "DPM++ 2M Karras", "juggernautXL")


def test_novelai_description_and_comment():
    comment = {"prompt": "1girl, cherry blossoms", "steps": 28, "height": 1216, "width": 832, "scale": 5.0,
               "uncond_scale": 1.0, "cfg_rescale": 0.0, "seed": 1234567890, "n_samples": 1,
               "noise_schedule": "native", "sampler": "k_euler_ancestral", "uc": "lowres, bad anatomy"}
    meta = read_metadata({"Title": "NovelAI generated image", "Description": "1girl, cherry blossoms",
                          "Software": "NovelAI", "Source": "NovelAI Diffusion V3 4BFD4DF3",
                          "Comment": json.dumps(comment)})
    assert meta.source == "novelai"
    assert settings(meta) == ("1girl, cherry blossoms", "lowres, bad anatomy", 28, 5.0, 1234567890, 832, 1216,
                              "Euler a", "NovelAI Diffusion V3 4BFD4DF3")


def test_swarmui_parameters():
    params = {"sui_image_params": {"prompt": "a red barn", "negativeprompt": "people", "model": "sdxl/base",
                                   "seed": 1106257833005336, "steps": 25, "cfgscale": 6.5, "width": 1024,
                                   "height": 768, "sampler": "dpmpp_2m", "scheduler": "karras",
                                   "swarm_version": "0.9.1.1"}, "sui_extra_data": {"date": "2024-08-07"}}
    meta = read_metadata({"parameters": json.dumps(params)})
    assert meta.source == "swarmui"
    assert settings(meta) == ("a red barn", "people", 25, 6.5, 1106257833005336, 1024, 768, "DPM++ 2M Karras",
                              "sdxl/base")


def test_draw_things_xmp_user_comment():
    comment = {"c": "a cabin in snow", "uc": "text, watermark", "seed": 3021, "steps": 22, "scale": 6,
               "sampler": "DPM++ 2M Karras", "size": "768x512", "model": "sd_v1.5_f16.ckpt", "strength": 1}
    escaped = json.dumps(comment).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           '<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/"><exif:UserComment><rdf:Alt>'
           f'<rdf:li xml:lang="x-default">{escaped}</rdf:li></rdf:Alt></exif:UserComment>'
           '</rdf:Description></rdf:RDF></x:xmpmeta>')
    meta = read_metadata({"XML:com.adobe.xmp": xmp})
    assert meta.source == "drawthings"
    assert settings(meta) == ("a cabin in snow", "text, watermark", 22, 6.0, 3021, 768, 512, "DPM++ 2M Karras",
                              "sd_v1.5_f16.ckpt")


def test_invokeai_dream_and_legacy_negative_in_brackets():
    dream = read_metadata({"Dream": '"a castle on a hill [fog] [people]" -s 50 -S 3892583 -W 512 -H 768 -C 7.5 -A k_lms'})
    assert dream.source == "invokeai"
    assert settings(dream) == ("a castle on a hill", "fog, people", 50, 7.5, 3892583, 512, 768, "LMS", None)
    legacy = read_metadata({"sd-metadata": json.dumps({"model_weights": "stable-diffusion-1.5", "image": {
        "prompt": [{"prompt": "a harbour at night [boats, blurry]", "weight": 1.0}], "steps": 40, "cfg_scale": 8,
        "seed": 77, "width": 640, "height": 512, "sampler": "k_euler_a"}})})
    assert settings(legacy) == ("a harbour at night", "boats, blurry", 40, 8.0, 77, 640, 512, "Euler a",
                                "stable-diffusion-1.5")


def comfy_graph(sampler="dpmpp_2m", scheduler="karras", seed=1106257833005336, samplers=1):
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a koi pond", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "murky", "clip": ["4", 1]}},
    }
    for n in range(samplers):
        graph[str(10 + n)] = {"class_type": "KSampler", "inputs": {
            "seed": seed + n, "steps": 30, "cfg": 7.0, "sampler_name": sampler, "scheduler": scheduler, "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}}
    return {"prompt": json.dumps(graph)}


def test_comfyui_samplers_map_and_say_when_they_do_not():
    meta = read_metadata(comfy_graph())
    assert settings(meta) == ("a koi pond", "murky", 30, 7.0, 1106257833005336, 1024, 1024, "DPM++ 2M Karras",
                              "sd_xl_base_1.0.safetensors")
    assert meta.notes == ()
    assert read_metadata(comfy_graph("euler_ancestral", "normal")).request.scheduler == "Euler a"
    assert read_metadata(comfy_graph("uni_pc_bh2", "normal")).request.scheduler == "UniPC"
    unknown = read_metadata(comfy_graph("dpmpp_sde", "karras"))
    assert unknown.request.scheduler is None and "dpmpp_sde" in unknown.notes[0]
    several = read_metadata(comfy_graph(samplers=4))
    assert several.notes[0] == "used the first of 4 samplers in the ComfyUI graph"
    assert several.request.seed == 1106257833005336
    odd = read_metadata(comfy_graph("euler", "exponential"))
    assert odd.request.scheduler == "Euler" and "exponential" in odd.notes[0]


def test_civitai_style_infotext():
    text = ('masterpiece, a wolf, <lora:detail:0.6>\nNegative prompt: worst quality\nSteps: 25, Sampler: DPM++ 2M, '
            'Schedule type: Karras, CFG scale: 7, Seed: 4017562946, Size: 512x768, Clip skip: 2, '
            'Created Date: 2024-03-01T10:00:00.0000000Z, Civitai resources: [{"type":"checkpoint",'
            '"modelVersionId":128713,"modelName":"DreamShaper","modelVersionName":"8"}], Civitai metadata: {}')
    meta = read_metadata({"parameters": text})
    assert settings(meta) == ("masterpiece, a wolf, <lora:detail:0.6>", "worst quality", 25, 7.0, 4017562946, 512,
                              768, "DPM++ 2M Karras", None)


# --- stealth metadata ----------------------------------------------------------------------------


def write_stealth(image: Image.Image, text: str, mode: str, compressed: bool) -> Image.Image:
    """The stealth-pnginfo writer's scheme: signature, 32-bit length in bits, payload; column by column."""
    signature = f"stealth_{'png' if mode == 'alpha' else 'rgb'}{'comp' if compressed else 'info'}".encode()
    payload = gzip.compress(text.encode()) if compressed else text.encode()
    bits = np.unpackbits(np.frombuffer(signature, np.uint8)).tolist()
    bits += [int(b) for b in format(len(payload) * 8, "032b")]
    bits += np.unpackbits(np.frombuffer(payload, np.uint8)).tolist()
    pixels = np.array(image.convert("RGBA" if mode == "alpha" else "RGB"))
    columns = pixels.transpose(1, 0, 2).copy()
    if mode == "alpha":
        flat = columns[..., 3].reshape(-1)
    else:
        flat = columns[..., :3].reshape(-1)
    flat[: len(bits)] = (flat[: len(bits)] & 0xFE) | np.array(bits, np.uint8)
    channel = flat.reshape(columns[..., 3].shape if mode == "alpha" else columns[..., :3].shape)
    if mode == "alpha":
        columns[..., 3] = channel
    else:
        columns[..., :3] = channel
    return Image.fromarray(columns.transpose(1, 0, 2))


INFOTEXT = "a paper boat\nNegative prompt: rain\nSteps: 18, Sampler: Euler a, CFG scale: 6, Seed: 99, Size: 96x64"


@pytest.mark.parametrize("mode, compressed", [("alpha", True), ("alpha", False), ("rgb", False), ("rgb", True)])
def test_stealth_metadata_in_the_alpha_channel_or_rgb(tmp_path, mode, compressed):
    rng = np.random.default_rng(1)
    base = Image.fromarray(rng.integers(0, 255, (64, 96, 4 if mode == "alpha" else 3), dtype=np.uint8))
    path = tmp_path / f"stealth-{mode}.png"
    write_stealth(base, INFOTEXT, mode, compressed).save(path)  # no text chunks at all
    assert read_png_info(path).text == {}
    _, meta = read_image_metadata(path)
    assert meta.source == "a1111-stealth"
    assert settings(meta) == ("a paper boat", "rain", 18, 6.0, 99, 96, 64, "Euler a", None)


def test_images_without_stealth_bits_stay_without_settings(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 255, (64, 64, 4), dtype=np.uint8)).save(path)
    assert read_image_metadata(path)[1].source == "none"


def test_a_stealth_length_larger_than_the_image_is_ignored(tmp_path):
    image = write_stealth(Image.new("RGBA", (40, 40), (1, 2, 3, 255)), "x" * 10, "alpha", False)
    pixels = np.array(image).transpose(1, 0, 2).copy()
    pixels[..., 3].reshape(-1)[120:152] |= 1  # length field: all ones (4 G bits)
    path = tmp_path / "liar.png"
    Image.fromarray(pixels.transpose(1, 0, 2)).save(path)
    assert read_image_metadata(path)[1].source == "none"


# --- malformed variants: skipped, never raising, never raw metadata in the prompt ------------------


MALFORMED = [
    {"parameters": "{\"adm_guidance\": \"(1.5, 0.8, 0.3)\", \"base_model\": "},  # cut-off Fooocus JSON
    {"parameters": json.dumps({"some_tool": {"prompt": 3}})},  # JSON from a tool nobody knows
    {"parameters": json.dumps({"sui_image_params": "nope"})},
    {"parameters": json.dumps({**FOOOCUS, "resolution": None, "seed": "many", "styles": "[unclosed"})},
    {"Comment": "{not json", "Software": "NovelAI", "Description": "x"},
    {"Comment": json.dumps([1, 2]), "Software": "NovelAI"},
    {"Dream": '"unbalanced -s 5'}, {"Dream": ""},
    {"sd-metadata": json.dumps({"image": "x"})},
    {"prompt": json.dumps({"3": {"class_type": "KSampler", "inputs": {"sampler_name": 5, "scheduler": None}}})},
    {"XML:com.adobe.xmp": "<x:xmpmeta><exif:UserComment><rdf:li>{broken</rdf:li></exif:UserComment></x:xmpmeta>"},
    {"XML:com.adobe.xmp": "<x:xmpmeta>nothing here</x:xmpmeta>"},
]


@pytest.mark.parametrize("chunks", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_variants_are_skipped_and_never_leave_raw_metadata_in_the_prompt(chunks):
    meta = read_metadata(chunks)
    prompt = meta.request.prompt
    assert not prompt.lstrip().startswith(("{", "[", "<")) and "adm_guidance" not in prompt
    meta.request.keep_valid()
    meta.to_json()
    if meta.source == "none":
        assert {key for key, _ in meta.other} == set(chunks)
        assert all(len(excerpt) <= 300 for _, excerpt in meta.other)


# --- hostile files ---------------------------------------------------------------------------------


def add_chunk(path: Path, kind: bytes, data: bytes) -> None:
    """Insert a raw chunk before IEND, with its CRC."""
    raw = path.read_bytes()
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.write_bytes(raw[:-12] + chunk + raw[-12:])


@pytest.fixture(scope="module")
def bomb_payload() -> bytes:
    """About 1 MB that inflates to 1 GB."""
    stream, parts, block = zlib.compressobj(9), [], bytes(16 * 2**20)
    for _ in range(64):
        parts.append(stream.compress(block))
    parts.append(stream.flush())
    return b"".join(parts)


@pytest.mark.parametrize("kind", [b"zTXt", b"iTXt"])
def test_a_decompression_bomb_costs_milliseconds_and_megabytes(tmp_path, bomb_payload, kind):
    path = png(tmp_path / "bomb.png", {"parameters": "a real prompt\nSteps: 5, Seed: 1, Size: 64x48"})
    data = b"Comment\0" + (b"\0" + bomb_payload if kind == b"zTXt" else b"\1\0\0\0" + bomb_payload)
    add_chunk(path, kind, data)
    assert path.stat().st_size < 2 * 2**20
    tracemalloc.start()
    started = time.perf_counter()
    info, meta = read_image_metadata(path)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert info.oversized == ["Comment"] and "Comment" not in info.text
    assert meta.request.prompt == "a real prompt" and "too large" in meta.notes[-1]
    assert peak < 64 * 2**20 and seconds < 5


def test_hostile_files_stay_listed_with_a_note_on_import_and_rescan(tmp_path, bomb_payload):
    folder = tmp_path / "from elsewhere"
    folder.mkdir()
    bomb = png(folder / "bomb.png", {})
    add_chunk(bomb, b"zTXt", b"parameters\0\0" + bomb_payload)
    big = png(folder / "huge prompt.png", {})
    add_chunk(big, b"tEXt", b"parameters\0" + b"word " * (10 * 2**20))  # 50 MB of plain text
    good = png(folder / "fine.png", {"parameters": "a real prompt\nSteps: 5, Sampler: Euler, Seed: 1, Size: 64x48"})
    with Gallery(tmp_path / "gallery") as gallery:
        report = scan.import_folder(gallery, folder)
        assert report.added == 3 and report.unreadable == []
        assert sorted(Path(p).name for p, _ in report.noted) == ["bomb.png", "huge prompt.png"]
        rows = {r.path.name: r for r in gallery.page()}
        assert rows["bomb.png"].request.prompt == "" and rows["huge prompt.png"].request.prompt == ""
        assert rows["fine.png"].request.prompt == "a real prompt"
        assert [r.path.name for r in gallery.page(ImageFilter(text="real"))] == ["fine.png"]
    assert good.exists()


def test_64_bit_seeds_survive_the_index(tmp_path):
    path = tmp_path / "gallery" / "comfy.png"
    path.parent.mkdir()
    png(path, comfy_graph(seed=HUGE_SEED))
    with Gallery(tmp_path / "gallery") as gallery:
        scan.rescan(gallery)
        record = gallery.page()[0]
        assert record.request.seed == HUGE_SEED
        assert record.request.keep_valid()[0].seed == HUGE_SEED
