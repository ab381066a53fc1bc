"""Editing images: image to image, inpainting, outpainting and upscaling, on the tiny pipeline and the
shipped model, through the engine, the gallery and the CLI."""

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from test_cli import run_cli
from test_shipped_model import SHIPPED

from desktop.demo.judge import judge
from desktop.engine.editing import natural_size
from desktop.engine.request import Edit, GenerationRequest
from desktop.gallery.inputs import pixel_hash
from desktop.gallery.metadata import read_image_metadata
from desktop.gallery.store import Gallery
from desktop.service import GenerationService, keep_edit_images
from desktop.settings import Settings

needs_shipped = pytest.mark.skipif(not (SHIPPED / "model_index.json").is_file(), reason="no shipped model")


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def distance(a, b) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


def gradient(size=(64, 64)):
    x = np.linspace(0, 255, size[0], dtype=np.float32)[None, :].repeat(size[1], 0)
    y = np.linspace(0, 255, size[1], dtype=np.float32)[:, None].repeat(size[0], 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2).astype(np.uint8))


def box_mask(size, box):
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def edit(engine, init, mask=None, prompt="a blue square", seed=1, steps=4, **settings):
    inputs = {pixel_hash(init): init}
    if mask is not None:
        inputs[pixel_hash(mask)] = mask
    request = GenerationRequest(prompt, steps=steps, seed=seed,
                                edit=Edit(pixel_hash(init), mask=pixel_hash(mask) if mask else None, **settings))
    return engine.generate(request, inputs=inputs)


def far_from(mask, blur: int) -> np.ndarray:
    """Pixels beyond the blur band of a mask (a Gaussian's reach: 3 sigma, plus one)."""
    return np.asarray(mask.filter(ImageFilter.MaxFilter(2 * (3 * blur + 1) + 1))) == 0


# --- image to image ----------------------------------------------------------------------------


def test_image_to_image_moves_away_from_the_init_as_strength_grows(engine):
    init = gradient()
    results = {s: edit(engine, init, strength=s, steps=10) for s in (0.1, 0.5, 1.0)}
    assert [len(r.step_seconds) for r in results.values()] == [1, 5, 10]  # round(steps x strength)
    gaps = [distance(r.images[0], init) for r in results.values()]
    assert gaps[0] < gaps[1] < gaps[2], gaps
    assert results[0.5].request.edit.strength == 0.5 and results[0.5].request.kind == "img2img"


def test_a_tiny_strength_still_runs_one_step_and_the_same_seed_repeats(engine):
    init = gradient()
    first, again = edit(engine, init, strength=0.01, steps=10), edit(engine, init, strength=0.01, steps=10)
    assert len(first.step_seconds) == 1
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))


def test_init_images_keep_their_aspect_ratio_and_round_to_multiples_of_8(engine):
    result = edit(engine, gradient((101, 67)), strength=0.5)
    assert result.images[0].size == (96, 64) == (result.request.width, result.request.height)
    assert natural_size((4000, 3000), (512, 512)) == (1176, 880)  # over 4x the native area: scaled down
    assert natural_size((700, 500), (512, 512)) == (696, 496)
    requested = engine.generate(GenerationRequest("x", steps=2, seed=1, width=64, height=128,
                                                  edit=Edit(pixel_hash(gradient()), strength=0.5)),
                                inputs={pixel_hash(gradient()): gradient()})
    assert requested.images[0].size == (64, 128)  # a requested size: scaled to cover, centre-cropped


# --- inpainting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler", ["Euler", "DPM++ 2M", "DDIM"])
def test_inpainting_leaves_pixels_outside_the_blur_band_exactly(engine, scheduler):
    init, mask = gradient(), box_mask((64, 64), (16, 16, 40, 40))
    result = engine.generate(
        GenerationRequest("a red circle", steps=4, seed=3, scheduler=scheduler,
                          edit=Edit(pixel_hash(init), mask=pixel_hash(mask), mask_blur=2)),
        inputs={pixel_hash(init): init, pixel_hash(mask): mask})
    out, keep = pixels(result.images[0]), far_from(mask, 2)
    assert np.array_equal(out[keep], pixels(init)[keep])
    assert np.abs(out[20:36, 20:36] - pixels(init)[20:36, 20:36]).mean() > 5  # and the inside changed
    assert result.request.kind == "inpaint" and result.request.edit.strength == 1.0


def test_only_masked_works_at_the_model_size_and_pastes_back(engine):
    init, mask = gradient((128, 128)), box_mask((128, 128), (60, 60, 75, 75))
    result = edit(engine, init, mask, only_masked=True, mask_padding=8, mask_blur=1)
    out, keep = pixels(result.images[0]), far_from(mask, 1)
    assert result.images[0].size == (128, 128)
    assert np.array_equal(out[keep], pixels(init)[keep])
    assert np.abs(out[62:74, 62:74] - pixels(init)[62:74, 62:74]).mean() > 5


def test_a_mask_of_another_size_is_scaled_to_the_image(engine):
    init, mask = gradient(), box_mask((256, 256), (0, 0, 127, 127))  # the top-left quarter
    out = pixels(edit(engine, init, mask, mask_blur=0).images[0])
    assert np.array_equal(out[40:, 40:], pixels(init)[40:, 40:])


# --- outpainting and upscaling -----------------------------------------------------------------


def test_outpainting_extends_the_canvas_and_keeps_the_original_exactly(engine):
    init = gradient()
    result = edit(engine, init, outpaint=(16, 0, 32, 8), mask_blur=4)
    out = result.images[0]
    assert out.size == (64 + 48, 64 + 8) == (result.request.width, result.request.height)
    assert np.array_equal(pixels(out)[0:64, 16:80], pixels(init))
    assert result.request.kind == "outpaint"


def test_upscaling_doubles_the_size_with_a_tiled_vae_beyond_native(engine):
    init = gradient()
    result = edit(engine, init, upscale=2.0)
    assert result.images[0].size == (128, 128) and result.request.edit.strength == 0.35
    assert not engine.loaded.pipe.vae.use_tiling  # tiling was on for the job only
    assert distance(result.images[0], init.resize((128, 128))) < distance(gradient((128, 128)).rotate(90), init.resize((128, 128)))


def test_edits_share_the_loaded_weights_and_keep_the_dtype(engine):
    edit(engine, gradient(), strength=0.5)
    edit(engine, gradient(), box_mask((64, 64), (8, 8, 30, 30)))
    loaded = engine.loaded
    image_pipe = loaded.pipeline("image")
    assert image_pipe.unet is loaded.pipe.unet and image_pipe.vae is loaded.pipe.vae
    assert loaded.pipe.unet.dtype == image_pipe.unet.dtype


# --- the shipped model --------------------------------------------------------------------------


@needs_shipped
def test_on_the_shipped_model_low_strength_keeps_what_the_image_shows(engine):
    made = engine.generate(GenerationRequest("a red circle on a blue background", seed=7, model=str(SHIPPED)))
    init = made.images[0]
    assert judge(init).colour == "red"
    inputs, other = {pixel_hash(init): init}, "a green square on a yellow background"
    results = [engine.generate(GenerationRequest(other, seed=5, model=str(SHIPPED), scheduler="DDIM", steps=50,
                                                 edit=Edit(pixel_hash(init), strength=s)), inputs=inputs).images[0]
               for s in (0.02, 0.5, 1.0)]
    # Under a contradicting prompt the shipped model repaints colours early (its own caption keeps
    # them: the model card measures that), so "low" here is DDIM's last step: t = 19 of 50 trailing
    # steps (at 10 steps the last is t = 99, where red already drifts to orange).
    assert (judge(results[0]).colour, judge(results[0]).background) == ("red", "blue")
    assert judge(results[2]).background != "blue"  # strength 1 starts from pure noise (zero terminal SNR)
    gaps = [distance(image, init) for image in results]
    assert gaps[0] < gaps[1] < gaps[2], gaps


@needs_shipped
def test_on_the_shipped_model_inpainting_keeps_the_picture_whole(engine, tmp_path):
    """The ordinary-model path (prediction blending) on a real model: a copy that names no sibling."""
    import json
    import shutil

    base = tmp_path / "latent-shapes-alone"
    shutil.copytree(SHIPPED, base)
    settings = json.loads((base / "latent_studio.json").read_text())
    settings.pop("inpainting_model")
    (base / "latent_studio.json").write_text(json.dumps(settings))
    made = engine.generate(GenerationRequest("a red circle on a blue background", seed=1, model=str(base)))
    init, mask = made.images[0], Image.new("L", made.images[0].size, 0)
    ImageDraw.Draw(mask).ellipse((20, 60, 70, 110), fill=255)
    for scheduler in ("DPM++ 2M", "Euler"):
        result = engine.generate(GenerationRequest("a yellow star on a blue background", seed=0, model=str(base),
                                                   scheduler=scheduler,
                                                   edit=Edit(pixel_hash(init), mask=pixel_hash(mask))),
                                 inputs={pixel_hash(init): init, pixel_hash(mask): mask})
        near = (np.asarray(mask.filter(ImageFilter.MaxFilter(33))) > 0) & ~far_from(mask, 4)
        # The band next to the mask (restored only partly) still looks like the original: no chaos.
        assert np.abs(pixels(result.images[0])[near] - pixels(init)[near]).mean() < 25, scheduler
        assert judge(result.images[0]).background == "blue"


# --- the gallery: inputs, metadata, reuse and lineage ----------------------------------------


def settings_for(model, tmp_path) -> Settings:
    return Settings(model=str(model), device="cpu", precision="fp32", gallery_dir=str(tmp_path / "gallery"))


def test_an_edit_is_recorded_with_its_inputs_and_reuse_restores_it_exactly(tiny_model, tmp_path):
    settings = settings_for(tiny_model, tmp_path)
    with Gallery(tmp_path / "gallery") as gallery:
        service = GenerationService(settings, gallery)
        parent = service.run(service.accept(GenerationRequest("a red circle", steps=2, seed=4))).saved[0]
        mask = box_mask((64, 64), (10, 10, 30, 30))
        request = GenerationRequest("a blue square", steps=3, seed=9, edit=keep_edit_images(
            gallery, Image.open(parent.path), mask, source=parent.path, mask_blur=2))
        child = service.run(service.accept(request)).saved[0]

        text = Image.open(child.path).text["parameters"]
        assert "Denoising strength: 1, Mask blur: 2" in text
        assert json.loads(Image.open(child.path).text["latent_studio"])["kind"] == "inpaint"
        meta = read_image_metadata(child.path)[1]
        assert meta.request.edit == child.request.edit and meta.request.kind == "inpaint"
        assert gallery.get(child.record.id).request.edit == child.request.edit

        reused = gallery.get(child.record.id).request.replace(model=None)  # "reuse settings" (the model by path)
        again = service.run(service.accept(reused)).saved[0]
        assert np.array_equal(pixels(again.image), pixels(child.image))

        lineage = gallery.lineage(gallery.get(child.record.id))
        assert [(i.role, i.record.id if i.record else None) for i in lineage.made_from] == [
            ("init image", parent.record.id), ("mask", None)]
        assert all(i.path.is_file() for i in lineage.made_from)
        assert {r.id for r in gallery.lineage(gallery.get(parent.record.id)).made_into} == {child.record.id, again.record.id}

        from desktop.gallery import scan

        scan.rebuild(gallery)  # a rebuild from the files keeps the edit, its inputs and the lineage
        rebuilt = gallery.find(child.path)
        assert rebuilt.request.edit == child.request.edit
        assert gallery.inputs.has(child.request.edit.init_image)
        assert [r.path for r in gallery.lineage(gallery.find(parent.path)).made_into] == [again.path, child.path]
        assert gallery.history()[0].settings["edit"]["mask_blur"] == 2


def test_a_missing_input_is_named_and_the_gallery_stays_whole(tiny_model, tmp_path):
    settings = settings_for(tiny_model, tmp_path)
    with Gallery(tmp_path / "gallery") as gallery:
        service = GenerationService(settings, gallery)
        request = GenerationRequest("x", steps=2, seed=1, edit=keep_edit_images(gallery, gradient(), strength=0.5))
        gallery.inputs.path(request.edit.init_image).unlink()
        from desktop.errors import LatentStudioError

        with pytest.raises(LatentStudioError, match="no longer in the gallery"):
            service.run(service.accept(request))
        assert gallery.count() == 0


# --- the CLI --------------------------------------------------------------------------------------


def test_cli_edits_end_to_end(tiny_model, tmp_path):
    init, mask = tmp_path / "init.png", tmp_path / "mask.png"
    gradient().save(init)
    box_mask((64, 64), (8, 8, 40, 40)).save(mask)
    proc = run_cli("generate", "a blue square", "--model", tiny_model, "--steps", "2", "--seed", "5",
                   "--init-image", init, "--mask", mask, "--mask-blur", "2", "--only-masked", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["kind"] == "inpaint" and report["request"]["edit"]["only_masked"] is True
    made = Image.open(report["images"][0]["path"])
    assert "Inpaint area: Only masked, Masked area padding: 32" in made.text["parameters"]

    proc = run_cli("upscale", report["images"][0]["path"], "--scale", "2", "--steps", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    up = json.loads(proc.stdout)
    assert up["kind"] == "upscale" and up["request"]["prompt"] == "a blue square"  # from the image's metadata
    assert Image.open(up["images"][0]["path"]).size == (128, 128)
    assert "Hires upscale: 2, Hires upscaler: Lanczos" in Image.open(up["images"][0]["path"]).text["parameters"]

    proc = run_cli("generate", "wider", "--model", tiny_model, "--steps", "2", "--init-image", init,
                   "--outpaint", "0,0,32,0", "--json")
    assert proc.returncode == 0, proc.stderr
    assert Image.open(json.loads(proc.stdout)["images"][0]["path"]).size == (96, 64)


def test_cli_refuses_bad_edits_with_one_line_before_loading_a_model(tmp_path):
    init = tmp_path / "init.png"
    gradient().save(init)
    Image.new("L", (64, 64), 0).save(tmp_path / "empty.png")
    Image.new("L", (64, 64), 255).save(tmp_path / "white.png")
    (tmp_path / "text.png").write_bytes(b"not an image")
    whole = init.read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    huge = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(huge)  # 1-bit: a small file that decodes to 400 megapixels
    cases = {
        ("--mask", tmp_path / "white.png"): "--mask needs an image",
        ("--outpaint", "8,0,0,0"): "--outpaint needs an image",
        ("--init-image", init, "--strength", "0"): "Strength must be",
        ("--init-image", init, "--strength", "1.5"): "Strength must be",
        ("--init-image", init, "--outpaint", "8,0,4,0"): "multiples of 8",
        ("--init-image", init, "--mask", tmp_path / "empty.png"): "mask is empty",
        ("--init-image", init, "--mask", tmp_path / "white.png"): "all white",
        ("--init-image", tmp_path / "text.png"): "not an image",
        ("--init-image", tmp_path / "cut.png"): "damaged or truncated",
        ("--init-image", huge): "large",
        ("--init-image", tmp_path / "nowhere.png"): "does not exist",
        ("--init-image", init, "--only-masked"): "needs a --mask",
    }
    for args, message in cases.items():
        proc = run_cli("generate", "x", "--model", tmp_path / "no-such-model", *args)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --- dedicated inpainting models ---------------------------------------------------------------


def test_a_nine_channel_inpainting_model_inpaints_and_says_it_cannot_do_text_to_image(engine, tmp_path):
    from tiny_models import save_tiny_inpainting_model

    from desktop.engine.models import detect_kind
    from desktop.errors import LatentStudioError

    folder = save_tiny_inpainting_model(tmp_path / "tiny-inpainting")
    assert detect_kind(folder) == "SD (custom) inpainting"  # a 32-wide text encoder: no known family
    init, mask = gradient(), box_mask((64, 64), (16, 16, 40, 40))
    inputs = {pixel_hash(init): init, pixel_hash(mask): mask}
    result = engine.generate(GenerationRequest("a red circle", steps=3, seed=2, model=str(folder),
                                               edit=Edit(pixel_hash(init), mask=pixel_hash(mask), mask_blur=1)),
                             inputs=inputs)
    assert engine.loaded.pipe.unet.config.in_channels == 9
    out, keep = pixels(result.images[0]), far_from(mask, 1)
    assert np.array_equal(out[keep], pixels(init)[keep]) and np.abs(out[20:36, 20:36] - pixels(init)[20:36, 20:36]).mean() > 5
    outpainted = engine.generate(GenerationRequest("x", steps=2, seed=2, model=str(folder),
                                                   edit=Edit(pixel_hash(init), outpaint=(0, 0, 16, 0))), inputs=inputs)
    assert outpainted.images[0].size == (80, 64)
    for request in (GenerationRequest("x", steps=2, model=str(folder)),
                    GenerationRequest("x", steps=2, model=str(folder), edit=Edit(pixel_hash(init), strength=0.5))):
        with pytest.raises(LatentStudioError, match="is an inpainting model"):
            engine.generate(request, inputs=inputs)


def test_sdxl_edits_run_end_to_end(engine, tmp_path):
    from tiny_models import build_tiny_sdxl_pipeline

    folder = tmp_path / "tiny-sdxl"
    build_tiny_sdxl_pipeline(folder / "_tok").save_pretrained(folder, safe_serialization=True)
    init, mask = gradient(), box_mask((64, 64), (16, 16, 40, 40))
    inputs = {pixel_hash(init): init, pixel_hash(mask): mask}
    for edit in (Edit(pixel_hash(init), strength=0.5), Edit(pixel_hash(init), mask=pixel_hash(mask), mask_blur=1)):
        result = engine.generate(GenerationRequest("a (red:1.2) circle", steps=2, seed=1, model=str(folder), edit=edit),
                                 inputs=inputs)
        assert result.images[0].size == (64, 64) and result.request.kind == edit.kind
    out, keep = pixels(result.images[0]), far_from(mask, 1)
    assert np.array_equal(out[keep], pixels(init)[keep])
