"""`gallery bench`: the gallery's speed on a synthetic gallery of N images (default 10,000).

Measures rebuilding the index from the files, opening an indexed gallery and showing its first
page, and full-text search, against the targets: first page <= 200 ms, search <= 50 ms, rebuild
>= 500 images/s, and opening reads no image file when nothing changed.
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from desktop.gallery.records import ImageFilter

WORDS = ("red blue green yellow purple orange white black circle square triangle cat dog house tree "
         "mountain river city night sunset portrait landscape oil painting watercolor photo detailed "
         "cinematic light shadow forest ocean castle robot dragon flower garden street rain snow "
         "desert space star moon sun cloud bridge tower ship train car bird horse lion wolf fox").split()
SEARCHES = ("red circle", "castle night", "watercolor fox", "drag", "sunset ocean painting")


def make_synthetic_gallery(root: Path, count: int, seed: int = 0) -> None:
    """Small PNGs with this app's chunks, about 100 a day over the last months."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from desktop.engine.request import GenerationRequest
    from desktop.gallery.metadata import text_chunks

    rng = random.Random(seed)
    now = time.time()
    for i in range(count):
        created = now - (count - i) * 864  # 100 per day
        day = datetime.fromtimestamp(created)
        folder = root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}"
        folder.mkdir(parents=True, exist_ok=True)
        req = GenerationRequest(prompt=" ".join(rng.choices(WORDS, k=8)), negative_prompt="blurry", steps=20,
                                guidance=7.0, width=512, height=512, scheduler="Euler a")
        info = PngInfo()
        for key, value in text_chunks(req.for_image(i), {"name": rng.choice(["sd15", "latent-shapes"])}, created).items():
            info.add_itxt(key, value)
        colour = tuple(rng.randrange(256) for _ in range(3))
        Image.new("RGB", (64, 64), colour).save(folder / f"{day:%Y%m%d-%H%M%S}-{i}.png", pnginfo=info)


def measure(root: Path) -> dict:
    from desktop.gallery import scan
    from desktop.gallery.store import DB_NAME, Gallery

    (root / DB_NAME).unlink(missing_ok=True)
    started = time.perf_counter()
    with Gallery(root) as gallery:  # a new database: filled from every file
        count = gallery.count()
    rebuild = time.perf_counter() - started

    opens, files_read = [], []
    for _ in range(5):
        started = time.perf_counter()
        with Gallery(root) as gallery:
            gallery.page(ImageFilter(), 0, 100)
            opens.append(time.perf_counter() - started)
            files_read.append(gallery.last_reconcile.added + len(gallery.last_reconcile.unreadable))

    searches = {}
    with Gallery(root) as gallery:
        for text in SEARCHES:
            times = []
            for _ in range(5):
                started = time.perf_counter()
                hits = gallery.page(ImageFilter(text=text), 0, 100)
                total = gallery.count(ImageFilter(text=text))
                times.append(time.perf_counter() - started)
            searches[text] = {"ms": 1000 * statistics.median(times), "hits": total, "first_page": len(hits)}
        started = time.perf_counter()
        scan.rescan(gallery)
        full_rescan = time.perf_counter() - started
    return {
        "images": count,
        "rebuild_seconds": rebuild, "rebuild_images_per_s": count / rebuild,
        "open_and_first_page_ms": 1000 * statistics.median(opens), "files_read_on_open": max(files_read),
        "search_ms_worst": max(s["ms"] for s in searches.values()), "searches": searches,
        "full_rescan_unchanged_seconds": full_rescan,
    }


def run(images: int, as_json: bool, window=None) -> int:
    """`window`: the window's own measurement (root -> dict), run on the same gallery when given."""
    with tempfile.TemporaryDirectory(prefix="latent-studio-gallery-bench-") as tmp:
        root = Path(tmp) / "gallery"
        started = time.perf_counter()
        make_synthetic_gallery(root, images)
        made = time.perf_counter() - started
        result = {"made_seconds": made, **measure(root)}
        if window is not None:
            result["window"] = window(root)
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"synthetic gallery: {result['images']} images (made in {made:.1f} s)")
    print(f"rebuild from files: {result['rebuild_seconds']:.2f} s = {result['rebuild_images_per_s']:.0f} images/s (target >= 500)")
    print(f"open + first page of 100: {result['open_and_first_page_ms']:.1f} ms (target <= 200), "
          f"image files read: {result['files_read_on_open']} (target 0)")
    for text, s in result["searches"].items():
        print(f"search {text!r}: {s['ms']:.1f} ms, {s['hits']} hits (target <= 50 ms)")
    print(f"full rescan with nothing changed: {result['full_rescan_unchanged_seconds']:.2f} s")
    if "window" in result:
        w = result["window"]
        print(f"window shown in {w['window_shown_s']:.2f} s; first page ({w['first_page_rows']} cells) at "
              f"{w['first_page_s']:.2f} s; scrolled to image {w['rows_at_end']} in {w['scroll_to_end_s']:.1f} s "
              f"with a worst event-loop stall of {w['worst_stall_ms']} ms (median tick {w['median_tick_ms']} ms)")
    return 0
