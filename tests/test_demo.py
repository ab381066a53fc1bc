"""The shipped model's domain, training pipeline and the shipped weights themselves."""

import dataclasses

import numpy as np
import pytest

from desktop.demo import domain
from desktop.demo.judge import judge
from desktop.demo.render import render


def test_renderer_is_deterministic_by_seed():
    a, b, c = render(5), render(5), render(6)
    assert a.caption == b.caption and np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


def shape_pixels(sample):
    return (np.asarray(sample.image) == domain.PALETTE[sample.colour]).all(axis=2)


def test_captions_match_pixels():
    seen = set()
    for seed in range(600):
        sample = render(seed)
        pixels = np.asarray(sample.image)
        assert sample.colour != sample.background
        assert tuple(pixels[0, 0]) == domain.PALETTE[sample.background]
        assert f"{sample.colour} {sample.shape}" in sample.caption and sample.caption.endswith(
            f"{sample.background} background")
        verdict = judge(sample.image)
        assert (verdict.colour, verdict.shape, verdict.background) == (sample.colour, sample.shape, sample.background)
        seen.add((sample.shape, sample.colour, sample.size, sample.position))
    assert {(s, c) for s, c, *_ in seen} == {(s, c) for s in domain.SHAPES for c in domain.COLOURS}


def test_size_and_position_in_the_caption_are_true_of_the_pixels():
    counted = {"small": 0, "large": 0, "medium": 0, "placed": 0}
    for seed in range(600):
        sample = render(seed)
        covered = shape_pixels(sample)
        low, high = domain.SIZES[sample.size]
        assert low - 0.005 <= covered.mean() <= high + 0.005, (seed, sample.caption, covered.mean())
        assert (sample.size in sample.caption) == (sample.size != "medium")
        ys, xs = np.nonzero(covered)
        centre = ((xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2)
        if sample.position is not None:
            column, row = domain.POSITIONS[sample.position]
            assert int(3 * centre[0] / 128) == column and int(3 * centre[1] / 128) == row, (seed, sample.caption)
            assert any(phrase in sample.caption for phrase in domain.position_phrases(sample.position))
            counted["placed"] += 1
        counted[sample.size] += 1
    assert min(counted.values()) > 100, counted


def test_captions_read_naturally():
    assert domain.caption("red", "circle", "blue") == "a red circle on a blue background"  # the old prompts
    assert (domain.caption("orange", "square", "white", "small", "top left")
            == "a small orange square in the top left on a white background")
    assert domain.caption("orange", "circle", "purple") == "an orange circle on a purple background"
    assert "at the top" in domain.position_phrases("top") and "in the middle" in domain.position_phrases("center")
    assert domain.size_of(0.05) == "small" and domain.size_of(0.15) == "medium" and domain.size_of(0.3) == "large"
    assert domain.position_of(10, 10) == "top left" and domain.position_of(64, 127) == "bottom"


def test_combinations_that_cannot_fit_are_never_drawn():
    import random

    from desktop.demo.render import draw, fits

    assert not fits("triangle", "large", "top left") and fits("triangle", "large", "center")
    with pytest.raises(ValueError, match="does not fit"):
        draw("triangle", "red", "blue", random.Random(0), size_name="large", position="top left")
    for seed in range(600):
        sample = render(seed)
        assert fits(sample.shape, sample.size, sample.position)


def test_an_added_shape_is_what_its_mask_holds_and_what_its_caption_says():
    """The inpainting pool's "add a shape here" items: the caption names the added shape alone, the mask
    covers it and stays clear of the shape that was there, and nothing outside the mask changed."""
    import random

    from desktop.demo.finetune import mask_around
    from desktop.demo.render import add_shape, apart

    rng, added_count = random.Random(0), 0
    for seed in range(300):
        sample = render(seed)
        added = add_shape(sample, rng)
        if added is None:
            continue
        added_count += 1
        mask = np.asarray(mask_around(rng, added.box, sample.box, 128)) > 127
        assert apart(sample.box, added.box, 6) and added.background == sample.background
        x0, y0, x1, y1 = added.box
        assert mask[y0:y1, x0:x1].all()  # the whole added shape is inside the mask
        bx0, by0, bx1, by1 = sample.box
        assert not mask[max(0, by0 - 1) : by1 + 1, max(0, bx0 - 1) : bx1 + 1].any()  # the old shape is not
        before, after = np.asarray(sample.image), np.asarray(added.image)
        assert np.array_equal(before[~mask], after[~mask])
        ys, xs = np.nonzero(mask)
        verdict = judge(added.image.crop((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)))
        assert (verdict.colour, verdict.shape, verdict.background) == (added.colour, added.shape, added.background)
        assert f"{added.colour} {added.shape}" in added.caption and (added.size == "small") == ("small" in added.caption)
        if added.position is not None:
            assert domain.position_of((x0 + x1) / 2, (y0 + y1) / 2) == added.position
    assert added_count > 150


def test_the_defaults_are_the_cheapest_good_setting_within_the_speed_budget():
    from desktop.demo.evaluate import SPEED_BUDGET_S, choose

    def trial(scheduler, steps, guidance, right, seconds):
        return {"scheduler": scheduler, "steps": steps, "guidance": guidance, "all": right / 36,
                "shape_colour": 1.0, "seconds_per_image": seconds}

    trials = [trial("UniPC", 25, 2.0, 35, 2 * SPEED_BUDGET_S),  # the best, but too slow
              trial("UniPC", 10, 3.0, 32, 0.6), trial("Euler", 10, 2.0, 33, 0.8), trial("DPM++ 2M", 15, 2.0, 33, 0.9)]
    assert choose(trials, 36) == {"scheduler": "Euler", "steps": 10, "guidance": 2.0}
    trials[1]["all"] = trials[2]["all"] = 31 / 36  # 15 steps is the best in budget; 10 steps two prompts short
    assert choose(trials, 36)["steps"] == 15
    slow = [dict(t, seconds_per_image=5.0) for t in trials]  # none in budget: the rule runs on them all
    assert choose(slow, 36) == {"scheduler": "UniPC", "steps": 25, "guidance": 2.0}


def test_the_judge_sees_stray_pixels_and_lines_on_the_frame_but_not_a_shape_touching_it():
    from PIL import ImageDraw

    clean = render(3)
    assert judge(clean.image).edge_artifacts == 0
    stray = clean.image.copy()
    stray.putpixel((0, 70), (255, 255, 255) if clean.background != "white" else (0, 0, 0))
    assert judge(stray).edge_artifacts == 1
    line = clean.image.copy()
    bg = np.array(domain.PALETTE[clean.background])
    ImageDraw.Draw(line).line((0, 127, 127, 127), fill=tuple(int(v) for v in np.clip(bg + 25, 0, 255)))
    assert judge(line).edge_artifacts >= 1
    touching = clean.image.copy()
    ImageDraw.Draw(touching).rectangle((0, 0, 30, 30), fill=domain.PALETTE[clean.colour])
    assert judge(touching).edge_artifacts == 0


def test_the_judge_reads_soft_small_shapes_as_the_decoder_draws_them():
    """The decoder gives a small square rounded corners and every edge a soft ramp: still a square, and
    a circle stays a circle. At the old midpoint cut (0.89) this square read as a circle."""
    from PIL import Image, ImageDraw, ImageFilter

    def soft(draw_shape) -> Image.Image:
        image = Image.new("RGB", (128, 128), domain.PALETTE["yellow"])  # the pair closest together
        draw_shape(ImageDraw.Draw(image), domain.PALETTE["orange"])
        return image.filter(ImageFilter.GaussianBlur(1.2))

    squircle = judge(soft(lambda d, fill: d.rounded_rectangle((50, 50, 73, 73), radius=8, fill=fill)))
    assert (squircle.shape, squircle.size, squircle.colour) == ("square", "small", "orange")
    assert 0.865 < squircle.fill_ratio < 0.89
    circle = judge(soft(lambda d, fill: d.ellipse((50, 50, 75, 75), fill=fill)))
    assert (circle.shape, circle.size) == ("circle", "small")
    blunt = judge(soft(lambda d, fill: d.polygon([(48, 80), (80, 80), (68, 56), (60, 56)], fill=fill)))
    assert blunt.shape == "triangle" and blunt.fill_ratio > 0.65  # a circle at the old cut (0.64)


def test_every_domain_word_is_one_token(tmp_path):
    from desktop.demo.architecture import build_tokenizer

    tok = build_tokenizer(tmp_path)
    for word in domain.vocabulary():
        assert len(tok(word).input_ids) == 3, word


def test_eval_prompts_are_balanced():
    from desktop.demo.evaluate import eval_prompts, inpaint_cases
    from desktop.demo.render import fits

    items = eval_prompts(72)
    keys = [(i["colour"], i["shape"], i["background"], i["size"], i["position"]) for i in items]
    assert len(set(keys)) == 72 and all(i["colour"] != i["background"] for i in items)
    for colour in domain.COLOURS:
        assert sum(i["colour"] == colour for i in items) == 9
    for shape in domain.SHAPES:
        assert sum(i["shape"] == shape for i in items) == 24
    for size in domain.SIZES:
        assert sum(i["size"] == size for i in items) == 24
    assert all(fits(i["shape"], i["size"], i["position"]) for i in items)
    assert {i["position"] for i in items} == {*domain.POSITIONS, None}
    for case in inpaint_cases(24):  # the corner to repaint is empty in the original
        x0, y0, x1, y1 = case["box"]
        assert not shape_pixels(case["sample"])[y0:y1, x0:x1].any()


def test_the_defaults_are_tuned_on_prompts_the_card_does_not_judge():
    from desktop.demo.evaluate import CARD_PROMPTS, eval_prompts, evaluate
    from desktop.engine.generation import Engine, EngineOptions
    from test_shipped_model import SHIPPED

    engine = Engine(options=EngineOptions(device="cpu", precision="fp32"))
    report = evaluate(engine, str(SHIPPED), steps=2, n=3, first=CARD_PROMPTS)  # what `tune` scores each setting on
    seeds = [row["seed"] for row in report.rows]
    assert seeds == [1000 + CARD_PROMPTS + i for i in range(3)]
    assert not set(seeds) & {item["seed"] for item in eval_prompts()}
    past = eval_prompts(CARD_PROMPTS + 3)[CARD_PROMPTS:]  # the same fixed cycle, continued
    assert [row["prompt"] for row in report.rows] == [
        domain.caption(i["colour"], i["shape"], i["background"], i["size"], i["position"]) for i in past]


def test_quick_training_gives_a_model_the_engine_loads_offline(tmp_path):
    from desktop.demo import export, train
    from desktop.engine.generation import Engine, EngineOptions
    from desktop.engine.request import GenerationRequest

    cfg = dataclasses.replace(train.PRESETS["quick"], vae_steps=3, pool=32, unet_steps=4, ema_start=2)
    trained = train.train(cfg, "cpu", tmp_path / "work", report=lambda line: None)
    folder = tmp_path / "model"
    facts = export.save_model(trained, folder, {"scheduler": "Euler", "steps": 3, "guidance": 4.0,
                                                "width": 128, "height": 128})
    assert facts["size_mb"] < 25
    assert (folder / "model_index.json").is_file() and (folder / "latent_preview.json").is_file()
    assert not list(folder.rglob("*.bin"))  # safetensors only
    engine = Engine(options=EngineOptions(device="cpu", precision="fp32"))
    result = engine.generate(GenerationRequest("a red circle on a blue background", model=str(folder), seed=1))
    assert result.request.steps == 3 and result.request.scheduler == "Euler"
    assert result.images[0].size == (128, 128)


def test_a_stopped_run_resumes_to_the_same_weights(tmp_path):
    import torch

    from desktop.demo import train
    from desktop.errors import LatentStudioError

    cfg = dataclasses.replace(train.PRESETS["quick"], vae_steps=2, pool=16, unet_steps=4, unet_batch=4,
                              ema_start=1, checkpoint_every=2)
    quiet = dict(report=lambda line: None)
    whole = train.train(cfg, "cpu", tmp_path / "w1", checkpoint_dir=tmp_path / "c1", **quiet)
    stopped = train.train(dataclasses.replace(cfg, max_minutes=1e-9), "cpu", tmp_path / "w2",
                          checkpoint_dir=tmp_path / "c2", **quiet)
    assert stopped.history["unet_steps_done"] == 1
    assert (tmp_path / "c2" / "vae.pt").is_file() and (tmp_path / "c2" / "denoiser.pt").is_file()
    lines = []
    resumed = train.train(cfg, "cpu", tmp_path / "w3", checkpoint_dir=tmp_path / "c2", resume=True,
                          report=lines.append)
    assert any("resuming the UNet at step 1" in line for line in lines)
    assert resumed.history["unet_steps_done"] == 4
    for a, b in zip(whole.unet.state_dict().values(), resumed.unet.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(LatentStudioError, match="other training settings"):
        train.train(dataclasses.replace(cfg, unet_lr=1.0), "cpu", tmp_path / "w4", checkpoint_dir=tmp_path / "c2",
                    resume=True, **quiet)


def test_growing_the_second_edition_gives_both_models_and_the_engine_uses_the_sibling(tmp_path):
    import json

    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from desktop.demo import finetune, make
    from desktop.demo.make import grow_model
    from desktop.engine.generation import Engine, EngineOptions
    from desktop.engine.request import Edit, GenerationRequest
    from desktop.gallery.inputs import pixel_hash
    from test_shipped_model import SHIPPED

    cfg = dataclasses.replace(finetune.FINETUNE_PRESETS["quick"], decoder_steps=2, corner_steps=2, pool=16,
                              unet_steps=2, inpaint_pool=16, inpaint_steps=2, checkpoint_every=1)
    finetune.FINETUNE_PRESETS["test"] = cfg
    try:
        facts = grow_model(SHIPPED, tmp_path / "shapes", "test", report=lambda line: None)
    finally:
        del finetune.FINETUNE_PRESETS["test"]
    base, sibling = tmp_path / "shapes", tmp_path / "shapes-inpaint"
    assert facts["size_mb"] < 30 and json.loads((base / "latent_studio.json").read_text())["inpainting_model"] == "shapes-inpaint"
    assert json.loads((sibling / "unet" / "config.json").read_text())["in_channels"] == 9
    schedules = [json.loads((f / "scheduler" / "scheduler_config.json").read_text()) for f in (base, sibling)]
    assert [(s["prediction_type"], s["rescale_betas_zero_snr"]) for s in schedules] == [("v_prediction", True)] * 2
    vae, text_encoder, tokenizer, _ = finetune.load_components(base)
    with torch.no_grad():  # the posterior is deterministic: a sample is the mean
        posterior = vae.encode(torch.zeros(1, 3, 128, 128)).latent_dist
    assert torch.allclose(posterior.sample(), posterior.mean, atol=1e-4)
    for word in domain.vocabulary():
        assert len(tokenizer(word).input_ids) == 3, word
    assert text_encoder.get_input_embeddings().weight.shape[0] == len(tokenizer)

    engine = Engine(options=EngineOptions(device="cpu", precision="fp32"))
    init, mask = render(5).image, Image.new("L", (128, 128), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 40, 40), fill=255)
    edit = Edit(pixel_hash(init), mask=pixel_hash(mask))
    result = engine.generate(GenerationRequest("a small red circle", model=str(base), steps=2, seed=1, edit=edit),
                             inputs={edit.init_image: init, edit.mask: mask})
    assert result.model.name == "shapes-inpaint" and engine.loaded.pipe.unet.config.in_channels == 9
    assert result.warnings[0] == "Inpainting with shapes-inpaint, the inpainting edition of shapes."
    far = np.asarray(result.images[0])[60:, 60:]
    assert np.array_equal(far, np.asarray(init)[60:, 60:])  # outside the mask and its blur band: the original
    plain = engine.generate(GenerationRequest("a small red circle", model=str(base), steps=2, seed=1))
    assert plain.model.name == "shapes" and not plain.warnings

    # The sibling's own defaults (chosen on inpainting cases) run an inpainting job that leaves them open.
    trials = [{"scheduler": "UniPC", "steps": 3, "guidance": 2.5, "all": 20 / 24, "seconds_per_image": 0.5},
              {"scheduler": "Euler", "steps": 3, "guidance": 2.0, "all": 16 / 24, "seconds_per_image": 0.5}]
    make.store_inpaint_defaults(base, trials, 24)
    repainted = engine.generate(GenerationRequest("a small red circle", model=str(base), seed=1, edit=edit),
                                inputs={edit.init_image: init, edit.mask: mask})
    assert (repainted.request.scheduler, repainted.request.steps, repainted.request.guidance) == ("UniPC", 3, 2.5)
    assert json.loads((base / "training.json").read_text())["inpaint_defaults"]["scheduler"] == "UniPC"
    plain = engine.generate(GenerationRequest("a small red circle", model=str(base), steps=2, seed=1))
    assert plain.request.scheduler == json.loads((base / "latent_studio.json").read_text())["scheduler"] != "UniPC"


def test_the_one_pass_recipe_trains_both_models_from_nothing(tmp_path):
    import json

    import torch

    from desktop.demo import export, finetune, make, one_pass, train
    from desktop.engine.generation import Engine, EngineOptions
    from desktop.engine.request import GenerationRequest

    first = dataclasses.replace(train.PRESETS["quick"], vae_steps=2, vae_batch=2, pool=16, unet_steps=3, unet_batch=4,
                                warmup=1, checkpoint_every=1)
    grow = dataclasses.replace(finetune.FINETUNE_PRESETS["quick"], decoder_steps=2, corner_steps=2, tail_steps=2,
                               denoised_steps=2, polish_steps=2, inpaint_pool=16, inpaint_steps=2, checkpoint_every=1)
    one_pass.PRESETS["test"] = one_pass.OnePassConfig(first, grow)
    lines = []
    try:
        facts = make.make_model("test", "cpu", tmp_path / "shapes", report=lines.append, recipe="one-pass")
    finally:
        del one_pass.PRESETS["test"]
    base, sibling = tmp_path / "shapes", tmp_path / "shapes-inpaint"
    assert facts["recipe"] == "one-pass" and "--recipe one-pass" in facts["command"] and "first_edition" not in facts
    assert any(line.startswith("one-pass step 3/3") for line in lines)  # the one pass ran, not stages 3-4
    assert not any(line.startswith(("denoiser step", "words step")) for line in lines)
    assert json.loads((sibling / "unet" / "config.json").read_text())["in_channels"] == 9
    schedules = [json.loads((f / "scheduler" / "scheduler_config.json").read_text()) for f in (base, sibling)]
    assert [(s["prediction_type"], s["rescale_betas_zero_snr"]) for s in schedules] == [("v_prediction", True)] * 2
    vae, text_encoder, tokenizer, _ = finetune.load_components(base)
    assert vae.config.scaling_factor == facts["scaling_factor"] != 1.0  # measured on the one pass's pool
    with torch.no_grad():
        posterior = vae.encode(torch.zeros(1, 3, 128, 128)).latent_dist
    assert torch.allclose(posterior.sample(), posterior.mean, atol=1e-4)
    assert text_encoder.get_input_embeddings().weight.shape[0] == len(tokenizer)
    for word in domain.vocabulary():
        assert len(tokenizer(word).input_ids) == 3, word
    g = facts["growth"]
    assert g["first_config"]["unet_steps"] == 3 and g["one_pass_seconds"] > 0 and g["vae_seconds"] > 0

    export.write_card(base, facts)
    card = (base / "README.md").read_text()
    assert "One run from nothing" in card and "in one pass" in card and "grown from the first" not in card
    assert "3 steps of batch 4, lr 0.0005" in card and "Training took" in card

    result = Engine(options=EngineOptions(device="cpu", precision="fp32")).generate(
        GenerationRequest("a small red circle in the top left on a blue background", model=str(base), steps=2, seed=1))
    assert result.images[0].size == (128, 128)


def test_the_decoder_tail_pass_trains_the_decoders_last_block_alone():
    import torch

    from desktop.demo import finetune
    from desktop.demo.train import images_tensor
    from test_shipped_model import SHIPPED

    vae = finetune.load_components(SHIPPED)[0].eval()
    with torch.no_grad():
        latents = vae.encode(images_tensor([1, 2])).latent_dist.mean
        split = finetune._decoder_tail(vae, finetune._decoder_head(vae, latents))
        assert torch.allclose(split, vae.decode(latents).sample, atol=1e-5)  # head + tail is the whole decoder
    before = {name: value.clone() for name, value in vae.state_dict().items()}
    cfg = dataclasses.replace(finetune.FINETUNE_PRESETS["quick"], tail_steps=3, tail_pool=4, tail_batch=2)
    losses = finetune.finetune_decoder_tail(vae, cfg, report=lambda line: None)
    changed = {name for name, value in vae.state_dict().items() if not torch.equal(value, before[name])}
    assert len(losses) == 3 and changed
    assert all(name.startswith(("decoder.up_blocks.3.", "decoder.conv_norm_out.", "decoder.conv_out.")) for name in changed)
    assert not vae.training and not any(p.requires_grad for p in vae.parameters())


def test_the_denoised_pass_decodes_from_what_the_base_unet_predicts():
    import torch

    from PIL import Image

    from desktop.demo import finetune
    from desktop.demo.train import pixels_tensor
    from test_shipped_model import SHIPPED

    vae, text_encoder, tokenizer, unet = finetune.load_components(SHIPPED)
    for module in (vae, text_encoder, unet):
        module.eval().requires_grad_(False)
    denoiser = (unet, text_encoder, tokenizer)
    samples = [render(seed) for seed in range(4)]
    cfg = dataclasses.replace(finetune.FINETUNE_PRESETS["quick"], denoised_share=1.0, denoised_t_max=100)
    with torch.no_grad():
        latents = vae.encode(pixels_tensor([s.image for s in samples])).latent_dist.mean
        torch.manual_seed(0)
        predicted = finetune.predicted_latents(vae, latents, [s.caption for s in samples], denoiser, cfg)
        decoded = ((vae.decode(predicted).sample.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1)
        torch.manual_seed(0)
        half = finetune.predicted_latents(vae, latents, [s.caption for s in samples], denoiser,
                                          dataclasses.replace(cfg, denoised_share=0.5))
    assert not any(torch.equal(p, latent) for p, latent in zip(predicted, latents))  # the UNet's, not the encoder's
    for sample, pixels in zip(samples, decoded):  # ... and a prediction of the same image
        seen, truth = judge(Image.fromarray(pixels.numpy())), judge(sample.image)
        assert (seen.colour, seen.shape, seen.background) == (truth.colour, truth.shape, truth.background)
    assert all(torch.equal(h, latent) or torch.equal(h, p) for h, latent, p in zip(half, latents, predicted))

    before = {name: value.clone() for name, value in vae.state_dict().items()}
    cfg = dataclasses.replace(cfg, denoised_steps=3, tail_pool=4, tail_batch=2)
    losses = finetune.finetune_decoder_tail(vae, cfg, lambda line: None, denoiser)
    changed = {name for name, value in vae.state_dict().items() if not torch.equal(value, before[name])}
    assert len(losses) == 3 and changed
    assert all(name.startswith(("decoder.up_blocks.3.", "decoder.conv_norm_out.", "decoder.conv_out.")) for name in changed)


def test_the_size_and_position_words_get_directions_of_their_own():
    import torch

    from desktop.demo import finetune
    from test_shipped_model import SHIPPED

    _, text_encoder, tokenizer, _ = finetune.load_components(SHIPPED)
    vocab = tokenizer.get_vocab()
    row = {word: vocab[f"{word}</w>"] for word in domain.vocabulary()}
    table = text_encoder.get_input_embeddings().weight.detach()
    before = table.detach().clone()

    finetune.separate_words(text_encoder, tokenizer, seed=1)
    words = [row[w] for w in finetune.NEW_WORDS]
    assert torch.equal(table[row["middle"]], table[row["center"]]) and torch.equal(table[row["an"]], table[row["a"]])
    untouched = [i for i in range(len(table)) if i not in words and i not in (row["middle"], row["an"])]
    assert torch.equal(table[untouched], before[untouched])  # colours, shapes and the rest as they were
    colour_length = float(before[[row[c] for c in domain.COLOURS]].norm(dim=1).mean())
    assert torch.allclose(table[words].norm(dim=1), torch.full((len(words),), colour_length), rtol=1e-4)
    cosines = torch.nn.functional.cosine_similarity(table[words][:, None], table[words][None], dim=2)
    assert float(cosines[~torch.eye(len(words), dtype=bool)].abs().max()) < 0.5  # no two alike
    assert finetune.names_position(domain.caption("red", "circle", "blue", "small", "top left")) and finetune.names_position("a red circle on the left on a blue background")
    assert not finetune.names_position(domain.caption("red", "circle", "blue", "large"))


def test_the_high_t_half_of_a_batch_is_drawn_from_the_top_of_the_schedule():
    import torch

    from desktop.demo import architecture, finetune
    from desktop.demo.train import denoising_loss
    from test_shipped_model import SHIPPED

    _, text_encoder, tokenizer, unet = finetune.load_components(SHIPPED)
    alphas = architecture.training_alphas()
    seen = []
    unet.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    ids = tokenizer(["a red circle on a blue background"] * 8, padding="max_length",
                    max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    x0 = torch.randn(8, 4, 16, 16)
    torch.manual_seed(0)
    with torch.no_grad():
        denoising_loss(unet, text_encoder(ids)[0], x0, alphas, 0.05)
        torch.manual_seed(0)
        denoising_loss(unet, text_encoder(ids)[0], x0, alphas, 0.05, high_t=900)
    assert bool((seen[1][4:] >= 900).all()) and torch.equal(seen[1][:4], seen[0][:4])


def test_v_prediction_trains_on_a_schedule_that_ends_in_pure_noise():
    """Zero terminal SNR: at t = T nothing of the image is left, so v = -x0 and only the caption can
    say where the shape goes; the exported base model is sampled on the same schedule."""
    import torch

    from desktop.demo import architecture, finetune
    from desktop.demo.train import denoising_loss
    from test_shipped_model import SHIPPED

    scheduler = architecture.build_scheduler(v_prediction=True)
    alphas, plain = architecture.training_alphas(v_prediction=True), architecture.training_alphas()
    assert float(alphas[-1]) == 0.0 and float(plain[-1]) > 0.004 and float(alphas[0]) > 0.99
    assert scheduler.config.prediction_type == "v_prediction" and scheduler.config.timestep_spacing == "trailing"

    _, text_encoder, tokenizer, unet = finetune.load_components(SHIPPED)
    x0 = torch.randn(4, 4, 16, 16)
    unet.register_forward_hook(lambda module, args, output: type(output)(sample=-x0))  # predicts v = -x0
    ids = tokenizer([""] * 4, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        at_the_end = alphas[-1:]  # every t drawn is T
        assert float(denoising_loss(unet, text_encoder(ids)[0], x0, at_the_end, 0.0, v_prediction=True)) < 1e-10
        assert float(denoising_loss(unet, text_encoder(ids)[0], x0, at_the_end, 0.0)) > 0.5  # ε is not -x0


def test_the_inpainting_loss_weighs_the_masked_region_and_keeps_each_images_mean_weight():
    """With mask_weight 4 an error inside a quarter mask costs 5 / 2 of the plain loss, one outside it
    1 / 2; a mask over the whole image changes nothing."""
    import torch

    from desktop.demo import architecture, finetune
    from desktop.demo.train import denoising_loss
    from test_shipped_model import SHIPPED

    _, text_encoder, tokenizer, unet = finetune.load_components(SHIPPED)
    unet = finetune.nine_channel_unet(unet)
    x0, inside = torch.randn(2, 4, 16, 16), torch.zeros(2, 1, 16, 16)
    inside[:, :, :8, :8] = 1
    error = [inside]
    unet.register_forward_hook(lambda module, args, output: type(output)(sample=-x0 + error[0]))  # v = -x0 at T
    ids = tokenizer([""] * 2, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    at_the_end = architecture.training_alphas(v_prediction=True)[-1:]

    def loss(mask, weight):
        extra = torch.cat([mask, torch.zeros_like(x0)], 1)
        with torch.no_grad():
            return float(denoising_loss(unet, text_encoder(ids)[0], x0, at_the_end, 0.0, extra, None, True, weight))

    assert loss(inside, 0.0) == pytest.approx(0.25) and loss(inside, 4.0) == pytest.approx(0.25 * 5 / 2)
    error[0] = 1 - inside
    assert loss(inside, 4.0) == pytest.approx(0.75 / 2)
    assert loss(torch.ones_like(inside), 4.0) == pytest.approx(loss(torch.ones_like(inside), 0.0))


def test_the_probe_reads_row_column_and_size_from_the_token_ids():
    import torch

    from desktop.demo import finetune
    from test_shipped_model import SHIPPED

    _, text_encoder, tokenizer, _ = finetune.load_components(SHIPPED)
    captions = [domain.caption("red", "circle", "blue", "small", "top left"), domain.caption("red", "circle", "blue"),
                "", domain.caption("red", "square", "blue", "large", "center", phrase=1),
                domain.caption("red", "circle", "white", position="right", phrase=1),
                domain.caption("orange", "circle", "blue", position="bottom", phrase=1)]
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    labels = finetune.word_labels(tokenizer)(ids)
    assert labels.tolist() == [[0, 0, 0], [-100, -100, 1], [-100, -100, -100], [1, 1, 2], [1, 2, 1], [2, 1, 1]]
    head = torch.nn.Linear(text_encoder.config.hidden_size, 9)
    loss = finetune.probe_loss(head, text_encoder(ids)[0], labels)
    loss.backward()
    table = text_encoder.get_input_embeddings().weight
    left, right = (tokenizer.get_vocab()[f"{w}</w>"] for w in ("left", "right"))
    assert float(table.grad[left].norm()) > 0 and float(table.grad[right].norm()) > 0  # it reaches the words


def test_the_text_encoder_tells_every_position_apart():
    """After stage 3 the encoder carried 'top left' and 'top right' as one (0.8 apart, two colours 25):
    the UNet cannot follow a word it is not given."""
    import torch

    from desktop.demo import finetune
    from test_shipped_model import SHIPPED

    _, text_encoder, tokenizer, _ = finetune.load_components(SHIPPED)

    def encoded(text):
        ids = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
        with torch.no_grad():
            return text_encoder(ids)[0][0]

    colours = float((encoded(domain.caption("red", "circle", "blue")) - encoded(domain.caption("green", "circle", "blue"))).norm())
    places = {p: encoded(domain.caption("red", "circle", "blue", "small", p)) for p in domain.POSITIONS}
    closest = min(float((places[a] - places[b]).norm()) for a in places for b in places if a < b)
    assert closest > 0.25 * colours, (closest, colours)

def test_the_polish_stage_trains_a_copy_of_the_base_unet_at_low_t_alone():
    import torch

    from desktop.demo import architecture, finetune
    from desktop.demo.train import Checkpoints, denoising_loss
    from test_shipped_model import SHIPPED

    seen = []

    def unet(inputs, t, states):  # a stand-in that records the timesteps the loss draws
        seen.append(t)
        return type("Out", (), {"sample": inputs * 0})()

    alphas = architecture.training_alphas(v_prediction=True)
    x0, states = torch.randn(64, 4, 16, 16), torch.zeros(64, 32, 128)
    for _ in range(5):
        denoising_loss(unet, states, x0, alphas, 0.0, v_prediction=True, t_below=300)
    drawn = torch.cat(seen)
    assert int(drawn.max()) < 300 and int(drawn.min()) >= 0 and len(set(drawn.tolist())) > 100

    vae, text_encoder, tokenizer, base = finetune.load_components(SHIPPED)
    for module in (vae, text_encoder, base):
        module.eval().requires_grad_(False)
    before = {name: value.clone() for name, value in base.state_dict().items()}
    text_before = {name: value.clone() for name, value in text_encoder.state_dict().items()}
    cfg = dataclasses.replace(finetune.FINETUNE_PRESETS["quick"], polish_steps=3, polish_pool=8, unet_batch=4)
    polished, losses, _ = finetune.polish_low_t(vae, base, text_encoder, tokenizer, cfg, Checkpoints(None, cfg, False),
                                                lambda line: None)
    assert len(losses) == 3 and polished is not base
    assert all(torch.equal(value, before[name]) for name, value in base.state_dict().items())  # the input is kept
    assert any(not torch.equal(value, before[name]) for name, value in polished.state_dict().items())
    assert all(torch.equal(value, text_before[name]) for name, value in text_encoder.state_dict().items())
