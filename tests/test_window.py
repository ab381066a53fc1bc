"""The window with real widgets (offscreen), the real worker thread and a tiny real pipeline."""

import json
from pathlib import Path
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent

from desktop import paths
from desktop.engine.request import GenerationRequest
from desktop.gallery.jobs import JobQueue
from desktop.gallery.store import open_gallery
from desktop.settings import Settings, load_settings, save_settings
from desktop.ui.qt_images import to_pil

JOB_TIMEOUT_MS = 120_000


@pytest.fixture
def user_model(tiny_model):
    """The tiny model installed the way a user installs one: a folder in the models dir."""
    target = paths.user_models_dir() / "tiny-sd"
    shutil.copytree(tiny_model, target)
    save_settings(Settings(model="tiny-sd"))
    return target


@pytest.fixture
def window(qtbot, user_model):
    from desktop.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    prepare(win)
    yield win
    if win.isVisible():
        win.close()


def drop_event(path) -> QDropEvent:
    """A file dropped from a file manager."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    event.mime = mime  # the event holds only a pointer: the data must live as long as it does
    return event

def prepare(win, prompt="a red circle on a blue background", steps=3):
    panel = win.prompt_panel
    panel.prompt.setPlainText(prompt)
    panel.steps.setValue(steps)
    panel.size_preset.setCurrentIndex(panel.size_preset.count() - 1)  # custom
    panel.width_box.setValue(64)
    panel.height_box.setValue(64)


def run_job(qtbot, win, click=True):
    with qtbot.waitSignal(win.job_done, timeout=JOB_TIMEOUT_MS) as blocker:
        if click:
            qtbot.mouseClick(win.prompt_panel.generate_button, Qt.MouseButton.LeftButton)
    return blocker.args  # job id, outcome, paths


def test_generate_button_puts_the_image_in_the_gallery_grid(qtbot, window):
    ticks = []
    timer = QTimer(interval=10)
    timer.timeout.connect(lambda: ticks.append(window.current_job))
    timer.start()
    steps_seen = []
    window.worker.worker.progress.connect(lambda p: steps_seen.append((p.step, p.preview.isNull())))
    job_id, outcome, saved = run_job(qtbot, window)
    timer.stop()
    assert outcome == "finished" and len(saved) == 1
    assert [s for s, _ in steps_seen] == [1, 2, 3] and not any(null for _, null in steps_seen)
    # the event loop kept running while the worker generated: the timer fired during the job
    assert ticks.count(job_id) >= 1
    grid = window.browser.model
    assert grid.rowCount() == 1 and str(grid.record_at(0).path) == saved[0]
    assert grid.record_at(0).request.prompt == "a red circle on a blue background"
    assert not window.preview.pixmap().isNull()
    assert window.history.list.count() == 1
    assert window.prompt_panel.seed.text() != ""  # the seed used is shown


def test_cancel_mid_run_stops_within_a_step_and_saves_nothing(qtbot, window):
    prepare(window, steps=150)
    steps = []

    def on_progress(p):
        steps.append(p.step)
        if p.step == 2:
            window.cancel()

    window.worker.worker.progress.connect(on_progress)
    _, outcome, saved = run_job(qtbot, window)
    assert outcome == "cancelled" and saved == []
    assert max(steps) <= 3
    assert window.gallery.count() == 0 and window.queue.jobs() == []
    assert window.prompt_panel.generate_button.text() == "Generate"


def test_a_queue_of_three_jobs_runs_in_order(qtbot, window):
    done = []
    window.job_done.connect(lambda job, outcome, saved: done.append(outcome))
    for prompt in ("first", "second", "third"):
        window.prompt_panel.prompt.setPlainText(prompt)
        window.generate()
    jobs = window.queue.jobs()
    assert [j.state for j in jobs] == ["running", "pending", "pending"]
    assert window.queue_panel.title.text() == "Queue: 2 waiting"
    window.queue.move(jobs[2].id, 0)  # reorder: third before second
    qtbot.waitUntil(lambda: len(done) == 3, timeout=JOB_TIMEOUT_MS)
    assert done == ["finished"] * 3
    assert [r.request.prompt for r in window.gallery.page()] == ["second", "third", "first"]  # newest first
    assert window.queue.jobs() == [] and not window.queue_panel.isVisible()


def test_pending_jobs_resume_after_a_restart_or_crash(qtbot, user_model):
    from desktop.ui.main_window import MainWindow

    with open_gallery() as gallery:
        queue = JobQueue(gallery)
        request = GenerationRequest(prompt="left over", steps=2, width=64, height=64, seed=5, model="tiny-sd")
        queue.add(request)
        queue.add(request.replace(prompt="also left over"))
        queue.claim_next()  # the app died while this one was running
    done = []
    win = MainWindow()
    qtbot.addWidget(win)
    win.job_done.connect(lambda job, outcome, saved: done.append(outcome))
    qtbot.waitUntil(lambda: len(done) == 2, timeout=JOB_TIMEOUT_MS)
    assert done == ["finished", "finished"]
    assert sorted(r.request.prompt for r in win.gallery.page()) == ["also left over", "left over"]
    win.close()


def test_dropping_an_a1111_png_fills_the_prompt_panel(qtbot, window, tmp_path):
    info = PngInfo()
    info.add_text("parameters", "a lighthouse, at dusk\nNegative prompt: fog\nSteps: 33, Sampler: DPM++ 2M, "
                                "Schedule type: Karras, CFG scale: 6.5, Seed: 1234, Size: 512x768, Model: sd15")
    png = tmp_path / "from a1111.png"
    Image.new("RGB", (512, 768)).save(png, pnginfo=info)
    with qtbot.waitSignal(window.settings_loaded, timeout=10_000):
        window.dropEvent(drop_event(png))  # read off the GUI thread
    panel = window.prompt_panel
    assert panel.prompt.toPlainText() == "a lighthouse, at dusk" and panel.negative.toPlainText() == "fog"
    assert (panel.steps.value(), panel.guidance.value(), panel.width_box.value(), panel.height_box.value()) == (
        33, 6.5, 512, 768)
    assert panel.scheduler.currentText() == "DPM++ 2M Karras" and panel.seed.text() == "1234"
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    window.load_settings_from_png(plain)
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=10_000)
    assert "no generation settings" in window.banner.text()


def test_search_filters_the_grid(qtbot, window):
    for prompt in ("a red circle", "a blue square"):
        window.prompt_panel.prompt.setPlainText(prompt)
        run_job(qtbot, window)
    browser = window.browser
    assert browser.model.rowCount() == 2
    browser.search.setText("squ")
    qtbot.waitUntil(lambda: browser.model.rowCount() == 1, timeout=5000)
    assert browser.model.record_at(0).request.prompt == "a blue square"
    browser.search.setText("nothing like this")
    qtbot.waitUntil(lambda: browser.stack.currentWidget() is browser.empty, timeout=5000)
    assert "No images match" in browser.empty.text()


def test_a_broken_model_shows_an_error_and_the_next_job_works(qtbot, window):
    broken = paths.user_models_dir() / "broken-sd"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                         "unet": ["diffusers", "UNet2DConditionModel"]}))
    window._load_models()
    panel = window.prompt_panel
    panel.model.setCurrentIndex(panel.model.findData("broken-sd"))
    prepare(window)
    _, outcome, _ = run_job(qtbot, window)
    assert outcome == "failed" and window.banner.isVisible() and "broken-sd" in window.banner.text()
    assert "Traceback" not in window.banner.text()
    panel.model.setCurrentIndex(panel.model.findData("tiny-sd"))
    prepare(window)
    _, outcome, saved = run_job(qtbot, window)
    assert outcome == "finished" and not window.banner.isVisible()


def test_detail_view_and_reuse_settings(qtbot, window):
    from desktop.ui.detail_view import DetailDialog

    window.prompt_panel.negative.setPlainText("blurry")
    run_job(qtbot, window)
    record = window.browser.model.record_at(0)
    dialog = DetailDialog(record, window.actions, window)
    qtbot.addWidget(dialog)
    assert not dialog.view.pixmap().isNull()
    texts = [w.text() for w in dialog.findChildren(type(window.banner))]
    assert "blurry" in texts and str(record.request.seed) in texts
    window.prompt_panel.prompt.setPlainText("something else")
    with qtbot.waitSignal(window.settings_loaded, timeout=10_000):
        window.actions.reuse_settings(record)
    assert window.prompt_panel.prompt.toPlainText() == record.request.prompt
    assert window.prompt_panel.seed.text() == str(record.request.seed)
    window.actions.set_favourite([record], True)
    assert window.browser.model.record_at(0).favourite


def test_settings_at_the_models_defaults_are_left_to_the_model_that_runs_the_job(qtbot, window):
    """Inpainting with the shipped model runs its sibling: at the sibling's defaults unless the user
    changed a setting (the fields show the chosen model's)."""
    from desktop.engine.models import ModelDefaults

    panel = window.prompt_panel
    panel.apply_model_defaults(ModelDefaults(steps=10, guidance=2.0, scheduler="Euler", width=128, height=128))
    assert (panel.steps.value(), panel.scheduler.currentText()) == (10, "Euler")
    request = panel.to_request()
    assert (request.steps, request.guidance, request.scheduler) == (None, None, None)
    panel.steps.setValue(12)
    panel.scheduler.setCurrentText("UniPC")
    request = panel.to_request()
    assert (request.steps, request.guidance, request.scheduler) == (12, None, "UniPC")


def test_settings_and_geometry_survive_a_restart(qtbot, window):
    from desktop.ui.main_window import MainWindow

    window.prompt_panel.prompt.setPlainText("remember me")
    window.resize(900, 700)
    window.close()
    assert load_settings().last_request["prompt"] == "remember me"
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.prompt_panel.prompt.toPlainText() == "remember me"
    assert again.prompt_panel.model_ref() == "tiny-sd"
    again.close()


def test_with_no_model_the_window_says_how_to_add_one(qtbot, monkeypatch, tmp_path):
    from desktop.ui.main_window import MainWindow

    monkeypatch.setattr(paths, "shipped_models_dir", lambda: tmp_path / "no shipped model")  # as if deleted
    win = MainWindow()
    qtbot.addWidget(win)
    assert not win.prompt_panel.generate_button.isEnabled()
    assert "No model is installed" in win.preview.message and str(paths.user_models_dir()) in win.preview.message
    win.close()


def test_self_test_runs_the_real_window_headless(user_model, tmp_path):
    from test_cli import ROOT

    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--self-test"], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "self-test passed" in proc.stdout


def test_rescan_runs_off_the_gui_thread_and_shows_dropped_in_images(qtbot, window):
    info = PngInfo()
    info.add_text("parameters", "dropped by hand\nSteps: 5, Sampler: Euler, CFG scale: 3, Seed: 2, Size: 32x32")
    Image.new("RGB", (32, 32)).save(window.gallery.root / "by hand.png", pnginfo=info)
    window._rescan()
    qtbot.waitUntil(lambda: window.browser.model.total == 1, timeout=20_000)
    assert window.browser.model.record_at(0).request.prompt == "dropped by hand"
    assert "1 added" in window.statusBar().currentMessage()


def test_dropping_a_fooocus_png_fills_every_field_and_notes_what_did_not_map(qtbot, window, tmp_path):
    from test_foreign_formats import BIG_SEED, FOOOCUS, png

    path = png(tmp_path / "fooocus.png", {"parameters": json.dumps({**FOOOCUS, "resolution": "(512, 768)"})})
    with qtbot.waitSignal(window.settings_loaded, timeout=10_000):
        window.load_settings_from_png(path)
    panel = window.prompt_panel
    assert panel.prompt.toPlainText() == "a lighthouse at dusk" and panel.negative.toPlainText() == "blurry, lowres"
    assert (panel.steps.value(), panel.guidance.value(), panel.width_box.value(), panel.height_box.value()) == (
        30, 4.5, 512, 768)
    assert panel.seed.text() == str(BIG_SEED) and panel.to_request().validated().seed == BIG_SEED
    assert window.banner.isVisible() and "dpmpp_2m_sde" in window.banner.text()
    assert "Fooocus Sharp" in window.banner.text() and "{" not in panel.prompt.toPlainText()


def test_edit_an_image_paint_a_mask_run_it_and_see_its_lineage(qtbot, window, tmp_path):
    """Drop an init image on the edit panel, paint a mask on the canvas, run, see the result and its
    lineage; then reuse restores the edit, and Upscale ×2 queues an upscale of the result."""
    from desktop.ui.detail_view import DetailDialog

    run_job(qtbot, window)  # a first picture, in the gallery: the edit's parent
    parent = window.browser.model.record_at(0)
    panel = window.edit_panel
    panel.dropEvent(drop_event(parent.path))  # read off the GUI thread
    qtbot.waitUntil(lambda: panel.init is not None, timeout=10_000)
    assert window.stage.currentWidget() is panel.canvas and panel.kind() == "img2img"
    canvas = panel.canvas
    canvas.resize(400, 400)
    target = canvas.image_rect()  # a real mouse stroke across the middle of the image
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=target.center().toPoint())
    qtbot.mouseMove(canvas, (target.center() + QPointF(40, 10)).toPoint())
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=(target.center() + QPointF(40, 10)).toPoint())
    assert panel.kind() == "inpaint" and panel.strength.value() == 100  # a mask: strength 1 by default
    before = panel.noised.pixmap().toImage()
    panel.strength.setValue(60)
    assert panel.noised.pixmap().toImage() != before  # the preview follows the strength

    job_id, outcome, saved = run_job(qtbot, window)
    assert outcome == "finished" and window.stage.currentWidget() is window.preview
    child = window.gallery.find(Path(saved[0]))
    assert child.request.kind == "inpaint" and child.request.edit.strength == 0.6
    lineage = window.gallery.lineage(child)
    assert lineage.made_from[0].record.id == parent.id and lineage.made_from[1].role == "mask"
    dialog = DetailDialog(child, window.actions, window)
    qtbot.addWidget(dialog)
    text = " ".join(w.text() for w in dialog.findChildren(type(window.banner)))
    assert "Inpainting" in text and parent.path.name in text
    parent_view = DetailDialog(parent, window.actions, window)
    qtbot.addWidget(parent_view)
    assert child.path.name in " ".join(w.text() for w in parent_view.findChildren(type(window.banner)))

    panel.clear()
    assert panel.kind() is None
    with qtbot.waitSignal(window.settings_loaded, timeout=10_000):
        window.actions.reuse_settings(child)  # restores the edit: its init image and mask come back
    assert panel.kind() == "inpaint" and panel.strength.value() == 60

    with qtbot.waitSignal(window.job_done, timeout=JOB_TIMEOUT_MS) as blocker:
        window.actions.upscale.emit(child)
    upscaled = window.gallery.find(Path(blocker.args[2][0]))
    assert upscaled.request.kind == "upscale" and (upscaled.request.width, upscaled.request.height) == (128, 128)


def test_dropping_an_a1111_png_with_loras_keeps_the_tags_and_names_the_missing_ones(qtbot, window, tmp_path):
    info = PngInfo()
    info.add_text("parameters", "a castle <lora:not-here:0.7>\nSteps: 20, Sampler: Euler, CFG scale: 7, "
                                'Seed: 5, Size: 512x512, Lora hashes: "not-here: 0123456789ab"')
    png = tmp_path / "with lora.png"
    Image.new("RGB", (64, 64)).save(png, pnginfo=info)
    with qtbot.waitSignal(window.settings_loaded, timeout=10_000):
        window.load_settings_from_png(png)
    assert window.prompt_panel.prompt.toPlainText() == "a castle <lora:not-here:0.7>"
    assert window.banner.isVisible() and "LoRAs not installed: not-here" in window.banner.text()


def test_the_lora_browser_inserts_tags_and_greys_what_does_not_fit(qtbot, window, tiny_model):
    import torch
    from safetensors.torch import save_file
    from tiny_models import build_tiny_pipeline, write_random_lora

    folder = paths.data_dir() / "loras"
    write_random_lora(folder / "fits.safetensors", build_tiny_pipeline(paths.cache_dir() / "tok"), "kohya")
    save_file({"lora_unet_a_attn2_to_k.lora_down.weight": torch.zeros(4, 2048)}, str(folder / "xl-only.safetensors"))
    browser = window.networks
    browser.reload()
    qtbot.waitUntil(lambda: browser.list.count() == 2, timeout=10_000)
    items = {browser.list.item(i).text().split()[0]: browser.list.item(i) for i in range(2)}
    assert not items["xl-only"].flags() & Qt.ItemFlag.ItemIsEnabled
    assert "For SDXL; the selected model is tiny-sd" in items["xl-only"].toolTip()
    window.prompt_panel.prompt.setPlainText("a red circle")
    cursor = window.prompt_panel.prompt.textCursor()
    cursor.movePosition(cursor.MoveOperation.End)
    window.prompt_panel.prompt.setTextCursor(cursor)
    browser.list.itemClicked.emit(items["fits"])
    assert window.prompt_panel.prompt.toPlainText() == "a red circle <lora:fits:1>"
    browser.search.setText("xl")
    assert browser.list.count() == 1
    job_id, outcome, saved = run_job(qtbot, window)
    assert outcome == "finished" and "Lora hashes" in Image.open(saved[0]).text["parameters"]


def test_settings_dialog_sets_lora_and_embedding_folders_and_the_browser_rescans(qtbot, window, tmp_path):
    from tiny_models import build_tiny_pipeline, write_random_lora

    from desktop.ui.settings_dialog import SettingsDialog

    elsewhere = tmp_path / "A1111" / "models" / "Lora"
    write_random_lora(elsewhere / "from-a1111.safetensors", build_tiny_pipeline(tmp_path / "tok"), "kohya")
    dialog = SettingsDialog(window.settings, str(paths.default_gallery_dir()), window)
    qtbot.addWidget(dialog)
    dialog.lora_folders.add_folder(str(elsewhere))
    dialog.embedding_folders.add_folder(str(tmp_path / "embeddings"))
    new = dialog.result_settings()
    assert new.lora_folders == [str(elsewhere)] and new.embedding_folders == [str(tmp_path / "embeddings")]
    assert window.apply_settings(new)
    qtbot.waitUntil(lambda: window.networks.list.count() == 1, timeout=10_000)
    assert load_settings().lora_folders == [str(elsewhere)]
    window.prompt_panel.prompt.setPlainText("a red circle <lora:from-a1111:0.5>")
    job_id, outcome, saved = run_job(qtbot, window)
    assert outcome == "finished" and "from-a1111: " in Image.open(saved[0]).text["parameters"]


def test_the_timeline_replays_the_steps_after_a_job_and_saves_the_animation(qtbot, window, tmp_path):
    timeline = window.timeline
    assert timeline.isHidden()
    _, outcome, _ = run_job(qtbot, window)
    assert outcome == "finished" and timeline.isVisible()
    assert len(timeline.frames) == 3 and timeline.slider.maximum() == 4 and timeline.label.text() == "Final image"
    timeline.slider.setValue(2)  # scrub back to step 2: its x̂₀ is on screen
    assert timeline.label.text() == "Step 2/3"
    on_screen = lambda: window.preview.pixmap().toImage().convertToFormat(timeline.frames[1][0].format())  # noqa: E731
    assert on_screen() == timeline.frames[1][0] and on_screen() != timeline.frames[2][0]
    timeline.view.setCurrentIndex(1)  # the noisy latent of the same step
    assert on_screen() == timeline.frames[1][1]
    with qtbot.waitSignal(timeline.saved, timeout=30_000) as saved:
        timeline.save_animation(tmp_path / "steps.webp")
    animation = Image.open(saved.args[0])
    assert animation.n_frames == 4  # one per step, then the image
    prepare(window, steps=2)
    window.generate()
    assert timeline.isHidden()  # the next job's steps replace these
    qtbot.waitSignal(window.job_done, timeout=JOB_TIMEOUT_MS).wait() if window.current_job else None


def test_the_explore_tab_noises_a_gallery_image_with_the_slider(qtbot, window):
    from desktop.engine import explain
    from desktop.engine.models import ModelRegistry

    _, _, saved = run_job(qtbot, window)
    record = window.browser.model.record_at(0)
    explore = window.explore
    with qtbot.waitSignal(explore.frame_shown, timeout=60_000):
        window.actions.explore.emit(record)  # the gallery's context menu: Explore
    assert window.tabs.currentWidget() is explore and explore.shown_t == 0
    assert all(not label.pixmap().isNull() for label in explore.channels)  # 4 latent channels on show
    assert "4 channels of 32×32" in explore.latent_hint.text()  # the tiny model's VAE scales by 2
    qtbot.waitUntil(lambda: len(explore.plot.visited) == 3)  # the panel's sampler at its 3 steps, marked
    window.prompt_panel.steps.setValue(5)
    qtbot.waitUntil(lambda: len(explore.plot.visited) == 5 and "at 5 steps" in explore.steps_hint.text())
    with qtbot.waitSignal(explore.frame_shown, timeout=60_000, check_params_cb=lambda t: t == 700):
        explore.slider.setValue(300)
        explore.slider.setValue(700)  # moved on before the first decode: the newest position wins
    assert explore.plot.t == 700 and explore.readout.text().startswith("t = 700")
    shown = window.preview.pixmap()  # untouched: the explorer has its own view
    # what is on screen is x_700 of the image with the fixed ε, through the model's own VAE
    process = explain.ForwardProcess.load(ModelRegistry().resolve("tiny-sd"))
    x0 = process.encode(explain.model_input(Image.open(saved[0]), 512))
    expected = process.frame(x0, process.noise_like(x0), 700).image
    assert np.asarray(expected).tolist() == np.asarray(to_pil(explore.view.pixmap().toImage())).tolist()
    assert not shown.isNull()


def test_exploring_a_file_that_is_not_an_image_says_so(qtbot, window, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with qtbot.waitSignal(window.explore.error, timeout=30_000) as error:
        window.explore.dropEvent(drop_event(bad))
    assert "notes.png" in error.args[0]
    assert window.explore.title.text() == "Could not explore this image."


def test_an_xyz_plot_runs_through_the_queue_and_its_cells_appear_as_they_finish(qtbot, window):
    from desktop.ui.grid_dialog import GridDialog

    prepare(window, steps=2)
    dialog = window.open_plot_dialog()
    assert isinstance(dialog, GridDialog)
    ok = dialog.buttons.buttons()[0]
    dialog.set_axis(0, "steps", "1,x")
    assert not ok.isEnabled() and "'x' is not a whole number" in dialog.verdict.text()
    dialog.set_axis(0, "prompt", "green,blue")
    assert not ok.isEnabled() and "not in the prompt" in dialog.verdict.text()
    dialog.set_axis(0, "steps", "1,2")
    dialog.set_axis(1, "guidance", "1,3")
    assert ok.isEnabled() and dialog.verdict.text() == "2 × 2 = 4 images, then the grid."
    cells = []
    window.worker.worker.progress.connect(lambda p: cells.append((p.step, p.total, p.cell is not None)))
    with qtbot.waitSignal(window.job_done, timeout=JOB_TIMEOUT_MS) as done:
        dialog.accept()
        assert window.queue_panel.list.item(0).text().startswith("▶ [plot steps (2) × guidance (2)]")
    _, outcome, saved = done.args
    assert outcome == "finished" and len(saved) == 5
    assert cells == [(i, 4, True) for i in range(1, 5)]
    assert window.browser.model.rowCount() == 5  # four cells, added one by one, then the grid
    sheet = Image.open(saved[-1])
    assert json.loads(sheet.text["latent_studio"])["grid"]["x"] == {"name": "steps", "values": [1, 2]}
    assert window.preview.pixmap().size().width() == sheet.width  # the grid is on screen
    assert window.progress.format().startswith("Done")


def test_cancelling_a_plot_keeps_the_cells_made(qtbot, window):
    prepare(window, steps=2)
    dialog = window.open_plot_dialog()
    dialog.set_axis(0, "seed", "1,2,3,4,5,6")
    dialog.set_axis(1, "guidance", "")
    window.worker.worker.progress.connect(lambda p: window.cancel() if p.cell is not None and p.step == 2 else None)
    with qtbot.waitSignal(window.job_done, timeout=JOB_TIMEOUT_MS) as done:
        dialog.accept()
    assert done.args[1] == "cancelled"
    qtbot.waitUntil(lambda: window.browser.model.rowCount() >= 2)
    records = [window.browser.model.record_at(i) for i in range(window.browser.model.rowCount())]
    assert {r.request.seed for r in records} <= {1, 2, 3}  # the finished cells, no grid
    assert all(r.request.width == 64 for r in records)
