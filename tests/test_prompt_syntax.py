"""AUTOMATIC1111's prompt syntax: the parser against A1111's rules, chunking, and what it does to
real pipelines (the tiny one, and the shipped model whose 30-token window makes chunking bite)."""

import numpy as np
import pytest
from PySide6.QtCore import Qt

from desktop.engine import conditioning
from desktop.engine.prompt_syntax import (adjust_weight, parse_attention, prompt_schedule, strip_extra_networks,
                                          unbalanced_brackets)
from desktop.engine.request import GenerationRequest

A, R = 1.1, 1 / 1.1

# Worked out from A1111's documented rules (wiki "Features: attention/emphasis", prompt_parser.py).
ATTENTION_CASES = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", A), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", A)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", A)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.3 * A * A), (" ", A), ("on", R * A), (" a ", A), ("hill", 0.5 * A), (", sun, ", A),
      ("sky", A ** 4), (".", A)]),
    ("[unbalanced", [("unbalanced", R)]),
    ("[[a]]", [("a", R * R)]),
    ("(a:0.5", [("a:0.5", A)]),
    ("a (red:1.0) circle", [("a red circle", 1.0)]),
    ("foo BREAK bar", [("foo", 1.0), ("BREAK", -1), ("bar", 1.0)]),
    ("", [("", 1.0)]),
]


@pytest.mark.parametrize("text, expected", ATTENTION_CASES, ids=range(len(ATTENTION_CASES)))
def test_attention_parses_as_a1111(text, expected):
    got = parse_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


SCHEDULE_CASES = [
    ("a [red:blue:2] circle", 4, [(2, "a red circle"), (4, "a blue circle")]),
    ("a [red:blue:0.5] circle", 10, [(5, "a red circle"), (10, "a blue circle")]),
    ("[blue:3] sky", 4, [(3, " sky"), (4, "blue sky")]),
    ("[fog::1]", 3, [(1, "fog"), (3, "")]),
    ("[cat|dog] on a mat", 4, [(1, "cat on a mat"), (2, "dog on a mat"), (3, "cat on a mat"), (4, "dog on a mat")]),
    ("a (big:1.2) [x:y:1] \\[z\\]", 2, [(1, "a (big:1.2) x \\[z\\]"), (2, "a (big:1.2) y \\[z\\]")]),
    ("[a:b]", 3, [(3, "[a:b]")]),  # no number: the prompt as written
    ("[unclosed:x:2", 3, [(3, "[unclosed:x:2")]),
    ("a [[red:blue:1]:green:2] b", 3, [(1, "a red b"), (2, "a blue b"), (3, "a green b")]),
]


@pytest.mark.parametrize("prompt, steps, expected", SCHEDULE_CASES, ids=range(len(SCHEDULE_CASES)))
def test_prompt_editing_schedules(prompt, steps, expected):
    assert prompt_schedule(prompt, steps) == expected


def test_extra_network_tags_are_taken_out_and_never_tokens(tiny_pipe):
    text, tags = strip_extra_networks("a <lora:detail:0.6> red circle <hypernet:x:1>")
    assert tags == [("lora", "detail:0.6"), ("hypernet", "x:1")] and "<" not in text
    with_tag = conditioning.chunks(tiny_pipe.tokenizer, "a red <lora:detail:0.6>circle")
    plain = conditioning.chunks(tiny_pipe.tokenizer, "a red circle")
    assert with_tag[0].tokens == plain[0].tokens


def test_unbalanced_brackets_are_found():
    assert unbalanced_brackets("a (b) [c] \\( d") == []
    assert unbalanced_brackets("a (b [c) d") == [2, 5, 7]


def test_adjust_weight_like_ctrl_up_and_down():
    assert adjust_weight("a red circle", 3, 3, 0.1) == ("a (red:1.1) circle", 3, 6)
    assert adjust_weight("a (red:1.1) circle", 3, 6, 0.1) == ("a (red:1.2) circle", 3, 6)
    assert adjust_weight("a (red:1.1) circle", 3, 6, -0.1) == ("a red circle", 2, 5)
    assert adjust_weight("a red circle", 2, 12, -0.1) == ("a (red circle:0.9)", 3, 13)


# --- chunks -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_pipe(tiny_model):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(tiny_model, local_files_only=True)


@pytest.fixture(scope="module")
def shipped_pipe():
    from diffusers import StableDiffusionPipeline

    from desktop import paths

    return StableDiffusionPipeline.from_pretrained(paths.shipped_models_dir() / "latent-shapes", local_files_only=True)


def words(tokenizer, chunk):
    end = tokenizer.eos_token_id
    return tokenizer.decode([t for t in chunk.tokens[1:-1] if t != end]).split()


def test_chunks_are_window_sized_with_comma_back_off_and_break(shipped_pipe):
    tok = shipped_pipe.tokenizer
    assert tok.model_max_length == 32  # 30 tokens a chunk
    first = ["red"] * 25
    prompt = " ".join(first) + ", " + " ".join(["blue"] * 10)  # the cut at 30 backs off to the comma at 25
    chunks = conditioning.chunks(tok, prompt)
    assert [len(c.tokens) for c in chunks] == [32, 32]
    assert words(tok, chunks[0]) == first + [","] and words(tok, chunks[1]) == ["blue"] * 10
    far = ["red"] * 5 + [","] + ["blue"] * 30  # the comma is 25 tokens back: too far, cut hard at 30
    hard = conditioning.chunks(tok, " ".join(far))
    assert len(words(tok, hard[0])) == 30
    broken = conditioning.chunks(tok, "red circle BREAK blue background")
    assert [words(tok, c) for c in broken] == [["red", "circle"], ["blue", "background"]]
    assert conditioning.chunks(tok, "")[0].tokens == [tok.bos_token_id] + [tok.eos_token_id] * 31


def test_a_plain_prompt_encodes_exactly_as_diffusers_does(tiny_pipe):
    import torch

    ours = conditioning.encode(tiny_pipe, "a red circle on a blue background").hidden
    with torch.inference_mode():
        theirs = tiny_pipe.encode_prompt("a red circle on a blue background", "cpu", 1, False)[0]
    assert torch.equal(ours, theirs)


def test_weights_scale_tokens_and_keep_the_mean(tiny_model):
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model, local_files_only=True)
    untrained = conditioning.encode(pipe, "a (red:1.5) circle").hidden  # averages to ~0: no mean to restore
    assert torch.isfinite(untrained).all() and untrained.shape == conditioning.encode(pipe, "x").hidden.shape
    with torch.no_grad():  # a final norm with a bias, as trained CLIP has: outputs with a mean
        pipe.text_encoder.final_layer_norm.bias.fill_(0.4)
    plain = conditioning.encode(pipe, "a red circle").hidden
    heavy = conditioning.encode(pipe, "a (red:1.5) circle").hidden
    assert torch.allclose(plain.mean(), heavy.mean(), atol=1e-5) and not torch.equal(plain, heavy)
    red = 2  # BOS, "a", "red": the weighted token moves most
    moved = (heavy - plain).abs().mean(dim=-1)[0]
    assert int(moved.argmax()) == red


def test_long_prompts_and_negatives_are_padded_to_one_length(shipped_pipe):
    built = conditioning.build(shipped_pipe, " ".join(["red circle"] * 20), "", 4)
    positive, negative = built.positive[0][1].hidden, built.negative[0][1].hidden
    assert positive.shape[1] == negative.shape[1] == 2 * 32


# --- what it does to images ----------------------------------------------------------------------------


def pixels(image):
    return np.asarray(image, dtype=np.int16)


@pytest.fixture
def shipped_engine():
    from desktop.engine.generation import Engine, EngineOptions

    return Engine(options=EngineOptions(device="cpu", precision="fp32"))


def test_weight_one_is_a_no_op_and_larger_weights_change_more(engine):
    base = dict(seed=3, steps=4, width=64, height=64, guidance=5.0)
    plain = pixels(engine.generate(GenerationRequest("a red circle", **base)).images[0])
    same = pixels(engine.generate(GenerationRequest("a (red:1.0) circle", **base)).images[0])
    assert np.array_equal(plain, same)
    small = pixels(engine.generate(GenerationRequest("a (red:1.3) circle", **base)).images[0])
    large = pixels(engine.generate(GenerationRequest("a (red:2.5) circle", **base)).images[0])
    assert 0 < np.abs(small - plain).mean() < np.abs(large - plain).mean()


def test_text_past_the_first_window_changes_the_image(shipped_engine):
    start = ", ".join(["a red circle on a blue background"] * 4)  # 4 × 8 tokens: past the 30-token window
    base = dict(seed=11, steps=6)
    result = shipped_engine.generate(GenerationRequest(start, **base))
    longer = shipped_engine.generate(GenerationRequest(start + ", a green square", **base))
    assert result.warnings == [] and longer.warnings == []
    assert np.abs(pixels(result.images[0]) - pixels(longer.images[0])).mean() > 0.5


def test_prompt_editing_switches_at_the_right_step(shipped_engine):
    def previews(prompt):
        frames = []
        shipped_engine.generate(GenerationRequest(prompt, seed=5, steps=4, scheduler="Euler"),
                                on_step=lambda step, total, preview: frames.append(pixels(preview.noisy)))
        return frames

    red, blue = previews("a red circle on a blue background"), previews("a blue circle on a blue background")
    edited = previews("a [red:blue:2] circle on a blue background")
    assert all(np.array_equal(edited[i], red[i]) for i in (0, 1))  # steps 1-2 use "red"
    assert not np.array_equal(edited[2], red[2]) and not np.array_equal(edited[2], blue[2])  # then "blue"
    alternating = previews("a [red|blue] circle on a blue background")
    assert np.array_equal(alternating[0], red[0]) and not np.array_equal(alternating[1], red[1])


def test_ctrl_up_and_down_in_the_prompt_editor(qtbot):
    from desktop.ui.prompt_panel import PromptPanel

    panel = PromptPanel()
    qtbot.addWidget(panel)
    editor = panel.prompt
    editor.setPlainText("a red circle")
    cursor = editor.textCursor()
    cursor.setPosition(4)  # inside "red"
    editor.setTextCursor(cursor)
    qtbot.keyClick(editor, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert editor.toPlainText() == "a (red:1.1) circle" and editor.textCursor().selectedText() == "red"
    qtbot.keyClick(editor, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert editor.toPlainText() == "a (red:1.2) circle"
    for _ in range(2):
        qtbot.keyClick(editor, Qt.Key.Key_Down, Qt.KeyboardModifier.ControlModifier)
    assert editor.toPlainText() == "a red circle"
    editor.setPlainText("a (red circle")
    assert "without a partner" in editor.toolTip()
    editor.setPlainText("a (red) circle")
    assert editor.toolTip() == ""


# --- SDXL: both text encoders and the pooled embedding follow the same rules --------------------------


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory):
    from tiny_models import build_tiny_sdxl_pipeline

    folder = tmp_path_factory.mktemp("models") / "tiny-sdxl"
    build_tiny_sdxl_pipeline(folder / "_tok").save_pretrained(folder, safe_serialization=True)
    return folder


def test_sdxl_plain_prompts_encode_as_diffusers_does_both_encoders_and_pooled(tiny_sdxl):
    import torch
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl, local_files_only=True)
    ours = conditioning.encode(pipe, "a red circle on a blue background")
    with torch.inference_mode():
        hidden, _, pooled, _ = pipe.encode_prompt("a red circle on a blue background", device="cpu",
                                                  do_classifier_free_guidance=False)
    assert ours.hidden.shape[-1] == 64 and torch.allclose(ours.hidden, hidden, atol=1e-6)
    assert torch.allclose(ours.pooled, pooled, atol=1e-6)
    long = conditioning.encode(pipe, " ".join(["red circle"] * 50))  # 100 tokens: two chunks, both encoders
    assert long.hidden.shape[1] == 2 * 77 and long.pooled.shape == pooled.shape


def test_sdxl_weights_long_prompts_and_editing_reach_the_image(tiny_sdxl):
    from desktop.engine.generation import Engine, EngineOptions

    engine = Engine(options=EngineOptions(device="cpu", precision="fp32"), default_model=str(tiny_sdxl))
    base = dict(seed=4, steps=3, width=64, height=64, guidance=5.0)

    def image(prompt):
        result = engine.generate(GenerationRequest(prompt, **base))
        assert result.warnings == []
        return pixels(result.images[0])

    plain = image("a red circle")
    assert np.array_equal(plain, image("a (red:1.0) circle"))
    assert not np.array_equal(plain, image("a (red:1.8) circle"))
    assert not np.array_equal(plain, image("a [red:blue:1] circle"))
    assert image(" ".join(["red circle"] * 40)).shape == plain.shape
