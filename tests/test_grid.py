"""X/Y/Z plots: axes parsed and checked, every cell generated and kept, one labelled grid with its axes."""

import json
import threading

import pytest
from PIL import Image
from test_cli import run_cli

from desktop.engine import grid
from desktop.engine.generation import GenerationCancelled
from desktop.engine.request import GenerationRequest
from desktop.errors import InvalidRequest
from desktop.gallery.metadata import read_image_metadata
from desktop.gallery.store import Gallery
from desktop.service import GenerationService
from desktop.settings import Settings


def test_axes_are_typed_and_quoted_values_keep_their_commas():
    assert grid.parse_axis("steps=4,8,12") == grid.Axis("steps", (4, 8, 12))
    assert grid.parse_axis("cfg=1, 3.5").values == (1.0, 3.5)
    assert grid.parse_axis('sampler=euler,"DPM++ 2M"').values == ("Euler", "DPM++ 2M")
    assert grid.parse_axis('prompt=red,"blue, bright"').values == ("red", "blue, bright")
    assert grid.parse_axis("guidance=1,3").labels == ("CFG: 1", "CFG: 3")
    cases = {"colour=red": "NAME=V1,V2", "steps": "NAME=V1,V2", "steps=4,x": "'x' is not a whole number",
             "guidance=1,lots": "'lots' is not a number", "sampler=Euler,Fast": "Unknown scheduler",
             "steps=4,4": "given twice", "steps=": "one or more values"}
    for text, message in cases.items():
        with pytest.raises(InvalidRequest, match=message):
            grid.parse_axis(text)


def test_cells_cover_every_combination_x_fastest_and_say_what_they_need():
    base = GenerationRequest("a red circle <lora:ink:1>", seed=5)
    x, y, z = grid.parse_axis("steps=2,3"), grid.parse_axis("prompt=red,green,blue"), grid.parse_axis("lora=0,0.5")
    cells = grid.cells(base, x, y, z)
    assert len(cells) == 12 and [c.position for c in cells[:3]] == [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
    last = cells[-1].request
    assert (last.steps, last.prompt, last.seed) == (3, "a blue circle <lora:ink:0.5>", 5)
    with pytest.raises(InvalidRequest, match="not in the prompt"):
        grid.cells(GenerationRequest("a square"), grid.parse_axis("prompt=circle,square"))
    with pytest.raises(InvalidRequest, match="--init-image"):
        grid.cells(base, grid.parse_axis("strength=0.3,0.6"))
    with pytest.raises(InvalidRequest, match="exactly one"):
        grid.cells(GenerationRequest("a square"), grid.parse_axis("lora=0,1"))
    with pytest.raises(InvalidRequest, match="one axis only"):
        grid.cells(base, x, grid.parse_axis("steps=5,6"))
    with pytest.raises(InvalidRequest, match="150"):
        grid.cells(base, grid.parse_axis("steps=10,500"))


def test_the_grid_has_a_label_band_and_one_cell_per_combination():
    x, y = grid.parse_axis("steps=1,2,3"), grid.parse_axis("guidance=1,7")
    colours = {(i, j, 0): Image.new("RGB", (64, 48), (40 * i, 100 * j, 200)) for i in range(3) for j in range(2)}
    sheet = grid.compose(colours, x, y)
    top, left = sheet.height - 2 * 48, sheet.width - 3 * 64
    assert left == 64 and top > 20  # a column of row labels as wide as a cell, a band of column labels
    for (i, j, _), image in colours.items():
        assert sheet.getpixel((left + i * 64 + 32, top + j * 48 + 24)) == image.getpixel((0, 0))
    band = sheet.crop((left, 0, sheet.width, top)).convert("L")
    assert min(band.getdata()) < 100  # the labels are drawn
    z = grid.parse_axis("seed=1,2")
    both = grid.compose({**colours, **{(i, j, 1): im for (i, j, _), im in colours.items()}}, x, y, z)
    assert both.width > 2 * sheet.width and both.height > sheet.height


def service_for(tiny_model, tmp_path):
    settings = Settings(model=str(tiny_model), device="cpu", precision="fp32", gallery_dir=str(tmp_path / "gallery"))
    gallery = Gallery(tmp_path / "gallery")
    return GenerationService(settings, gallery), gallery


def test_a_grid_keeps_each_cell_in_the_gallery_and_records_its_axes(tiny_model, tmp_path):
    service, gallery = service_for(tiny_model, tmp_path)
    with gallery:
        x, y = grid.parse_axis("steps=1,2"), grid.parse_axis('sampler=Euler,"DPM++ 2M"')
        result = service.run_grid(GenerationRequest("a red circle", seed=11, width=64, height=64), x, y)
        assert gallery.count() == 5  # four cells and the grid
        assert [(e.prompt, e.use_count) for e in gallery.history()] == [("a red circle", 1)]  # the plot, not each cell
        assert [cell.request.steps for cell, _ in result.cells] == [1, 2, 1, 2]
        assert {job.saved[0].request.seed for _, job in result.cells} == {11}
        record = json.loads(Image.open(result.grid.path).text["latent_studio"])
        assert record["grid"]["x"] == {"name": "steps", "values": [1, 2]}
        assert [c["position"] for c in record["grid"]["cells"]] == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]]
        assert "Script: X/Y/Z plot, X Type: Steps, X Values: \"1,2\"" in Image.open(result.grid.path).text["parameters"]
        assert read_image_metadata(result.grid.path)[1].request.prompt == "a red circle"
        image = Image.open(result.grid.path)
        assert image.width == 64 + 2 * 64 and image.height > 2 * 64


def test_a_cancelled_grid_keeps_the_cells_already_made(tiny_model, tmp_path):
    service, gallery = service_for(tiny_model, tmp_path)
    cancel = threading.Event()
    with gallery:
        with pytest.raises(GenerationCancelled):
            service.run_grid(GenerationRequest("a red circle", seed=1, width=64, height=64, steps=1),
                             grid.parse_axis("seed=1,2,3"), cancel=cancel, on_cell=lambda cell, job: cancel.set())
        assert gallery.count() == 1


def test_cli_grid_and_its_errors(tiny_model, tmp_path):
    out = tmp_path / "grid out"
    proc = run_cli("grid", "a red circle", "--x", "steps=1,2", "--y", "guidance=1,4", "--model", tiny_model,
                   "--size", "64", "--seed", "3", "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert len(report["cells"]) == 4 and report["cells"][3]["labels"] == ["Steps: 2", "CFG: 4"]
    assert len(list(out.glob("*.png"))) == 5 and Image.open(report["grid"]).width == 3 * 64
    for args, message in ((["--x", "colour=red,blue"], "NAME=V1,V2"), (["--x", "steps=1,x"], "whole number"),
                          (["--x", "steps=1", "--z", "seed=1,2"], "--z needs a --y"),
                          (["--x", "strength=0.2,0.4"], "--init-image")):
        proc = run_cli("grid", "a red circle", *args, "--model", tiny_model)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr


def test_a_queued_plot_keeps_its_axes_and_a_broken_one_is_set_aside(tmp_path):
    from desktop.gallery.jobs import JobQueue

    axes = grid.axes_record(grid.parse_axis('sampler=Euler,"DPM++ 2M"'), grid.parse_axis("steps=1,2"))
    with Gallery(tmp_path / "g") as gallery:
        queue = JobQueue(gallery, "me")
        queue.add(GenerationRequest("a red circle", seed=1), axes)
        queue.add(GenerationRequest("a red circle", seed=2), grid.axes_record(grid.parse_axis("steps=1,2")))
        job = queue.claim_next()
        assert job.grid == axes and grid.axes_from_record(job.grid)[0].values == ("Euler", "DPM++ 2M")
        assert [j.grid is not None for j in queue.jobs()] == [True, True]
        with gallery.transaction() as conn:  # a later version's axis, or a hand-edited file
            conn.execute("UPDATE jobs SET request = json_set(request, '$.grid.x.name', 'colour') WHERE id = ?",
                         (job.id + 1,))
        later = JobQueue(gallery, "me")
        assert [j.id for j in later.jobs()] == [job.id]
        assert "NAME=V1,V2" in later.set_aside[0].problem
