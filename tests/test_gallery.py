"""The gallery core on real files and a real SQLite database."""

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from desktop.engine.request import GenerationRequest
from desktop.errors import LatentStudioError
from desktop.gallery import scan, schema
from desktop.gallery.metadata import read_metadata
from desktop.gallery.pngchunks import UnreadablePNG, read_png_info
from desktop.gallery.records import ImageFilter
from desktop.gallery.store import DB_NAME, Gallery

MODEL = {"name": "tiny-sd", "kind": "diffusers"}


def request(prompt="a red circle on a blue background", **kw):
    fields = dict(steps=4, guidance=5.0, width=64, height=64, scheduler="Euler", seed=7)
    fields.update(kw)
    return GenerationRequest(prompt=prompt, **fields)


def picture(colour=(200, 30, 30), size=64, height=None):
    return Image.new("RGB", (size, height or size), colour)


def save(gallery, prompt="a red circle on a blue background", seed=7, **kw):
    req = request(prompt, seed=seed, **kw)
    return gallery.save_image(picture(size=req.width, height=req.height), req, MODEL).path


def png_with_chunks(path: Path, chunks: dict, size=(48, 32)) -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", size, (1, 2, 3)).save(path, pnginfo=info)
    return path


@pytest.fixture
def gallery(tmp_path):
    with Gallery(tmp_path / "my gallery ü") as g:
        yield g


def test_saved_images_are_listed_newest_first_with_every_field(gallery):
    first = save(gallery, "first", seed=1)
    second = save(gallery, "second", seed=2, negative_prompt="blurry")
    records = gallery.page()
    assert [r.path for r in records] == [second, first]
    top = records[0]
    assert (top.request.prompt, top.request.negative_prompt, top.request.seed, top.request.steps, top.request.guidance, top.request.width, top.request.height,
            top.request.scheduler, top.request.model, top.source) == ("second", "blurry", 2, 4, 5.0, 64, 64, "Euler", "tiny-sd",
                                                      "latent_studio")
    assert first.parent.relative_to(gallery.root).parts == tuple(time.strftime("%Y/%m/%d").split("/"))
    assert gallery.page(offset=1, limit=1)[0].path == first and gallery.count() == 2


def test_same_second_same_seed_never_collide(gallery):
    paths = [save(gallery, seed=5) for _ in range(4)]
    assert len(set(paths)) == 4 and all(p.exists() for p in paths)
    assert gallery.count() == 4


TRICKY_PROMPTS = [
    "line one\nline two\n\nline four",
    'quotes "double" and \'single\'',
    "commas, colons: semicolons; and = signs",
    "a prompt with Negative prompt: inside it",
    "first line\nNegative prompt: on a line of its own",
    "emoji 🎨🐈‍⬛ and ünïcödé 日本語",
    "Steps: 3, Sampler: Euler, Seed: 5",
    "long " * 2000,  # 10,000 characters
]


@pytest.mark.parametrize("prompt", TRICKY_PROMPTS, ids=range(len(TRICKY_PROMPTS)))
@pytest.mark.parametrize("negative", ["", "blurry, low quality\nsecond: line"])
def test_prompts_round_trip_exactly_through_the_a1111_chunk(gallery, prompt, negative):
    path = gallery.save_image(picture(), request(prompt, negative_prompt=negative).for_image(9), MODEL).path
    text = read_png_info(path).text
    from_a1111 = read_metadata({"parameters": text["parameters"]})
    assert (from_a1111.request.prompt, from_a1111.request.negative_prompt) == (prompt, negative)
    assert (from_a1111.request.seed, from_a1111.request.steps, from_a1111.request.guidance, from_a1111.request.scheduler, from_a1111.request.model,
            from_a1111.request.width, from_a1111.request.height) == (9, 4, 5.0, "Euler", "tiny-sd", 64, 64)
    ours = read_metadata(text)
    assert ours.source == "latent_studio" and (ours.request.prompt, ours.request.negative_prompt) == (prompt, negative)


@pytest.mark.parametrize("prompt", [p for p in TRICKY_PROMPTS if "Negative prompt:" not in p],
                         ids=lambda p: p[:12])
def test_other_tools_read_our_images(gallery, prompt):
    """sd-parsers (what SD Prompt Reader and others build on) reads prompt and settings exactly.

    It splits the text at any "Negative prompt:", so prompts holding those words are left out here;
    this app reads them back exactly (test above), as A1111 does unless they start a line.
    """
    from sd_parsers import ParserManager

    path = gallery.save_image(picture(), request(prompt, negative_prompt="blurry, dark").for_image(11), MODEL).path
    info = ParserManager().parse(str(path))
    sampler = info.samplers[0]
    assert info.generator.name == "AUTOMATIC1111"
    assert str(sampler.prompts[0]) == prompt.strip() and str(sampler.negative_prompts[0]) == "blurry, dark"
    assert sampler.name == "Euler" and sampler.model.name == "tiny-sd"
    assert sampler.parameters["steps"] == "4" and sampler.parameters["cfg_scale"] == "5"
    assert sampler.parameters["seed"] == "11" and info.metadata["Size"] == "64x64"


def test_privacy_setting_writes_no_text_chunks_but_the_gallery_still_lists_the_image(gallery):
    path = gallery.save_image(picture(), request("secret prompt").for_image(3), MODEL, strip_metadata=True).path
    assert read_png_info(path).text == {}
    assert gallery.page(ImageFilter(text="secret"))[0].path == path


def test_reading_other_tools_metadata():
    a1111 = read_metadata({"parameters": "masterpiece, cat\nNegative prompt: ugly\nSteps: 30, Sampler: DPM++ 2M, "
                                         "Schedule type: Karras, CFG scale: 6.5, Seed: 123, Size: 512x768, "
                                         'Model hash: abc, Model: "my, model", Version: v1.10'})
    assert (a1111.request.prompt, a1111.request.negative_prompt, a1111.request.steps, a1111.request.scheduler, a1111.request.guidance, a1111.request.seed,
            a1111.request.width, a1111.request.height, a1111.request.model) == ("masterpiece, cat", "ugly", 30, "DPM++ 2M Karras", 6.5, 123,
                                                        512, 768, "my, model")
    comfy_graph = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 25, "cfg": 8.0, "sampler_name": "euler_ancestral",
              "scheduler": "normal", "model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0],
              "latent_image": ["5", 0], "denoise": 1.0}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.safetensors"}},
        "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "x"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 640, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox in snow", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
    }
    comfy = read_metadata({"prompt": json.dumps(comfy_graph)})
    assert (comfy.source, comfy.request.prompt, comfy.request.negative_prompt, comfy.request.seed, comfy.request.steps, comfy.request.guidance,
            comfy.request.scheduler, comfy.request.width, comfy.request.height) == ("comfyui", "a fox in snow", "text, watermark", 42, 25,
                                                            8.0, "Euler a", 640, 512)
    assert "v1-5" in comfy.request.model
    workflow = {"nodes": [
        {"id": 3, "type": "KSampler", "widgets_values": [99, "fixed", 12, 4.5, "dpmpp_2m", "karras", 1],
         "inputs": [{"name": "positive", "link": 1}, {"name": "negative", "link": 2}]},
        {"id": 6, "type": "CLIPTextEncode", "widgets_values": ["a lighthouse"]},
        {"id": 7, "type": "CLIPTextEncode", "widgets_values": ["fog"]}],
        "links": [[1, 6, 0, 3, 1, "CONDITIONING"], [2, 7, 0, 3, 2, "CONDITIONING"]]}
    flow = read_metadata({"workflow": json.dumps(workflow)})
    assert (flow.request.prompt, flow.request.negative_prompt, flow.request.seed, flow.request.steps, flow.request.guidance, flow.request.scheduler) == (
        "a lighthouse", "fog", 99, 12, 4.5, "DPM++ 2M Karras")
    invoke = read_metadata({"invokeai_metadata": json.dumps({
        "positive_prompt": "a castle", "negative_prompt": "people", "seed": 5, "steps": 30, "cfg_scale": 7.5,
        "width": 768, "height": 512, "scheduler": "dpmpp_2m_k", "model": {"name": "sd-1.5"}})})
    assert (invoke.request.prompt, invoke.request.negative_prompt, invoke.request.seed, invoke.request.scheduler, invoke.request.model, invoke.request.width) == (
        "a castle", "people", 5, "DPM++ 2M Karras", "sd-1.5", 768)
    req, _ = invoke.request.keep_valid()
    assert (req.prompt, req.steps, req.guidance, req.width, req.height, req.seed) == ("a castle", 30, 7.5, 768, 512, 5)


@pytest.mark.parametrize("chunks", [
    {"parameters": ""}, {"parameters": "\n\n\n"}, {"parameters": "Steps: many, Seed: -, Size: huge"},
    {"latent_studio": "{not json"}, {"latent_studio": json.dumps({"request": "nope"})},
    {"prompt": "[1, 2"}, {"prompt": json.dumps({"1": {"class_type": "KSampler", "inputs": {"positive": ["9", 0]}}})},
    {"workflow": json.dumps({"nodes": "x"})}, {"invokeai_metadata": "null"}, {"sd-metadata": "{}"},
])
def test_malformed_metadata_never_crashes_and_keeps_what_is_readable(chunks):
    meta = read_metadata(chunks)
    meta.request.keep_valid()  # never raises
    if chunks.get("parameters", "").startswith("Steps"):
        assert meta.request.steps is None and meta.request.width is None


def test_out_of_range_settings_from_other_tools_are_dropped_not_fatal():
    meta = read_metadata({"parameters": "x\nSteps: 500, Sampler: Unknown, CFG scale: 99, Seed: 5, Size: 4097x13"})
    req, dropped = meta.request.keep_valid()
    assert (req.prompt, req.steps, req.guidance, req.width, req.seed, req.scheduler) == ("x", None, None, None, 5, None)


def test_full_text_search_and_filters(gallery):
    save(gallery, "a red circle on a blue background", seed=1)
    save(gallery, "a green square", seed=2, width=128, height=64)
    fox = save(gallery, 'the fox said: "hi", then left', seed=3)
    gallery.set_favourite([gallery.find(fox).id], True)
    assert [r.request.prompt for r in gallery.page(ImageFilter(text="circ blue"))] == ["a red circle on a blue background"]
    assert gallery.count(ImageFilter(text="square")) == 1
    assert gallery.count(ImageFilter(text='said: "hi')) == 1  # query syntax is searched for, never parsed
    assert gallery.count(ImageFilter(text='" : * OR (')) == 0
    assert [r.path for r in gallery.page(ImageFilter(favourites_only=True))] == [fox]
    assert gallery.count(ImageFilter(width=128, height=64)) == 1
    assert gallery.count(ImageFilter(model="tiny-sd")) == 3 and gallery.count(ImageFilter(model="other")) == 0
    now = time.time()
    assert gallery.count(ImageFilter(since=now - 60)) == 3 and gallery.count(ImageFilter(until=now - 60)) == 0
    gallery.set_tags(gallery.find(fox).id, ["Animals", "keep"])
    assert gallery.count(ImageFilter(text="animals")) == 1


def test_prompt_history_counts_uses_and_puts_pinned_first(gallery):
    for prompt in ["a cat", "a dog", "a cat"]:
        gallery.record_prompt(request(prompt))
    entries = gallery.history()
    assert [(e.prompt, e.use_count) for e in entries] == [("a cat", 2), ("a dog", 1)]
    gallery.set_pinned(entries[1].id, True)
    assert [e.prompt for e in gallery.history()] == ["a dog", "a cat"]
    assert [e.prompt for e in gallery.history("cat")] == ["a cat"]
    assert gallery.history()[1].settings["steps"] == 4


def test_rescan_imports_dropped_files_marks_missing_and_skips_broken_ones(gallery):
    kept = save(gallery, "kept", seed=1)
    gone = save(gallery, "gone", seed=2)
    drop = gallery.root / "dropped in"
    drop.mkdir()
    png_with_chunks(drop / "a1111.png", {"parameters": "a lighthouse\nSteps: 9, Sampler: Euler a, CFG scale: 4, Seed: 8, Size: 48x32"})
    png_with_chunks(drop / "plain.png", {})
    full = (drop / "a1111.png").read_bytes()
    (drop / "truncated.png").write_bytes(full[: len(full) // 2])
    (drop / "not really.png").write_text("hello")
    gone.unlink()
    report = scan.rescan(gallery)
    assert report.added == 2 and report.marked_missing == 1
    assert sorted(Path(p).name for p, _ in report.unreadable) == ["not really.png", "truncated.png"]
    lighthouse = gallery.page(ImageFilter(text="lighthouse"))[0]
    assert (lighthouse.source, lighthouse.request.steps, lighthouse.request.seed, lighthouse.request.scheduler, lighthouse.request.width) == (
        "a1111", 9, 8, "Euler a", 48)
    assert gallery.find(gone).missing and not gallery.find(kept).missing
    assert gallery.count() == 4  # the missing one stays listed until the user removes it
    gone.write_bytes(kept.read_bytes())
    assert scan.rescan(gallery).restored == 1 and not gallery.find(gone).missing


def test_removed_images_stay_removed_and_deleted_files_go_to_the_trash(gallery, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    keep = save(gallery, "remove me from the gallery only", seed=1)
    trash = save(gallery, "delete my file", seed=2)
    gallery.remove([gallery.find(keep).id])
    gallery.delete_files([gallery.find(trash).id])
    assert keep.exists() and not trash.exists()
    assert list((tmp_path / "xdg" / "Trash" / "files").iterdir())[0].name == trash.name
    scan.rebuild(gallery)
    assert gallery.count() == 0


def test_export_with_and_without_metadata(gallery, tmp_path):
    ids = [gallery.find(save(gallery, f"p{i}", seed=i)).id for i in range(2)]
    with_meta = gallery.export(ids, tmp_path / "out")
    bare = gallery.export(ids[:1], tmp_path / "bare", metadata=False)
    assert {read_metadata(read_png_info(p).text).request.prompt for p in with_meta} == {"p0", "p1"}
    assert read_png_info(bare[0]).text == {}
    assert Image.open(bare[0]).getpixel((0, 0)) == picture().getpixel((0, 0))


def test_a_lost_or_corrupt_database_is_rebuilt_with_every_field(tmp_path):
    root = tmp_path / "g"
    with Gallery(root) as g:
        fav = save(g, "favourite one", seed=1, negative_prompt="dull")
        save(g, "tagged one", seed=2)
        g.set_favourite([g.find(fav).id], True)
        g.set_tags(g.find(fav).id, ["best"])
        g.record_prompt(request("favourite one", negative_prompt="dull"))
        before = [r.to_json() for r in g.page()]
    for damage in ("delete", "garbage"):
        for part in root.glob(DB_NAME + "*"):
            part.unlink()
        if damage == "garbage":
            (root / DB_NAME).write_bytes(b"this is not a database" * 100)
        with Gallery(root) as g:
            after = [r.to_json() for r in g.page()]
            assert [{k: v for k, v in r.items() if k != "id"} for r in after] == [
                {k: v for k, v in r.items() if k != "id"} for r in before]
            assert [e.prompt for e in g.history()] == ["tagged one", "favourite one"]
    assert list(root.glob(DB_NAME + ".corrupt-*"))  # the damaged file is kept aside, not deleted


def test_a_database_from_a_newer_version_is_refused_and_left_untouched(tmp_path):
    root = tmp_path / "g"
    Gallery(root).close()
    with sqlite3.connect(root / DB_NAME) as conn:
        conn.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    conn.close()
    before = (root / DB_NAME).read_bytes()
    with pytest.raises(LatentStudioError, match="newer version"):
        Gallery(root)
    assert (root / DB_NAME).read_bytes() == before


def test_a_migration_that_fails_halfway_leaves_the_old_database_intact(tmp_path):
    root = tmp_path / "g"
    with Gallery(root) as g:
        save(g, "precious", seed=1)
    path = root / DB_NAME
    conn = sqlite3.connect(path, isolation_level=None)
    broken = schema.MIGRATIONS + ["ALTER TABLE images ADD COLUMN rating INTEGER;\nINSERT INTO no_such_table VALUES (1);"]
    with pytest.raises(LatentStudioError, match="left as it was"):
        schema.migrate(conn, path, broken)
    assert schema.schema_version(conn) == schema.LATEST
    assert "rating" not in [row[1] for row in conn.execute("PRAGMA table_info(images)")]
    conn.close()
    assert (root / f"{DB_NAME}.before-v{schema.LATEST + 1}.bak").exists()
    with Gallery(root) as g:
        assert [r.request.prompt for r in g.page()] == ["precious"]


def test_a_locked_database_gives_a_clear_error_and_loses_no_image(tmp_path):
    root = tmp_path / "g"
    Gallery(root).close()
    blocker = sqlite3.connect(root / DB_NAME, isolation_level=None)
    with Gallery(root, busy_timeout=0.2) as g:
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(LatentStudioError, match="saved as .* busy"):
            save(g, "made while locked", seed=4)
        blocker.execute("ROLLBACK")
    blocker.close()
    with Gallery(root) as g:  # listed by the cheap reconcile on open
        assert [r.request.prompt for r in g.page()] == ["made while locked"]


def test_opening_reads_only_folders_that_changed(tmp_path):
    root = tmp_path / "g"
    with Gallery(root) as g:
        for i in range(3):
            save(g, f"p{i}", seed=i)
    old_day = root / "2020" / "01" / "01"
    old_day.mkdir(parents=True)
    png_with_chunks(old_day / "old.png", {})
    long_ago = time.time() - 10 * 86400
    os.utime(old_day, (long_ago, long_ago))
    with Gallery(root) as g:  # the old folder did not change since... it was never seen: still skipped
        assert g.last_reconcile.added == 0
        assert scan.rescan(g).added == 1  # a full rescan finds it


def test_unreadable_png_errors_say_what_is_wrong(tmp_path):
    (tmp_path / "a.png").write_bytes(b"GIF89a....")
    with pytest.raises(UnreadablePNG, match="not a PNG"):
        read_png_info(tmp_path / "a.png")


def test_gallery_in_an_impossible_place_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("x")
    with pytest.raises(LatentStudioError, match="Cannot create the gallery folder"):
        Gallery(blocker / "gallery")


def test_import_folder_copies_other_tools_images_in(gallery, tmp_path):
    outside = tmp_path / "ComfyUI output"
    (outside / "sub").mkdir(parents=True)
    png_with_chunks(outside / "one.png", {"prompt": json.dumps({
        "1": {"class_type": "KSampler", "inputs": {"seed": 3, "steps": 5, "cfg": 2, "positive": ["2", 0]}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a comfy prompt"}}})})
    png_with_chunks(outside / "sub" / "two.png", {})
    report = scan.import_folder(gallery, outside)
    assert report.added == 2 and (outside / "one.png").exists()
    record = gallery.page(ImageFilter(text="comfy"))[0]
    assert record.source == "comfyui" and record.path.is_relative_to(gallery.root / "imported")
    assert scan.import_folder(gallery, outside).added == 0  # twice is harmless


def test_thumbnails_are_cached_and_remade_when_stale(gallery, tmp_path):
    from desktop.gallery.thumbnails import thumbnail

    path = gallery.save_image(picture(size=512), request(width=512, height=512).for_image(1), MODEL).path
    first = thumbnail(path, tmp_path / "thumbs")
    assert Image.open(first).size == (256, 256)
    assert thumbnail(path, tmp_path / "thumbs") == first
    picture((0, 0, 255), size=300).save(path)
    second = thumbnail(path, tmp_path / "thumbs")
    assert second != first and Image.open(second).getpixel((5, 5))[:3] == (0, 0, 255)
