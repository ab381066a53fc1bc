"""Reconciling the index with the files: the cheap check on open, a full rescan, a rebuild, imports.

New PNGs are indexed with their metadata, files that are gone are marked missing (never deleted
from the index in bulk: a drive may just be unplugged), and files that come back are unmarked.
Unreadable files (truncated, not a PNG) are reported and skipped.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from desktop.errors import LatentStudioError
from desktop.gallery.metadata import read_image_metadata
from desktop.gallery.pngchunks import UnreadablePNG
from desktop.gallery.records import INDEX_FIELDS

log = logging.getLogger(__name__)

RECONCILED_KEY = "reconciled_ns"
CLOCK_SLACK_NS = 2_000_000_000  # folder times are coarse on some filesystems
BATCH = 500
IMPORTED = "imported"


@dataclass
class ScanReport:
    added: int = 0
    marked_missing: int = 0
    restored: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    noted: list[tuple[str, str]] = field(default_factory=list)  # (path, note): listed, metadata not read
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {**self.__dict__, "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
                "noted": [{"path": p, "note": n} for p, n in self.noted]}

    def summary(self) -> str:
        text = (f"{self.added} added, {self.marked_missing} marked missing, {self.restored} found again, "
                f"{len(self.unreadable)} unreadable ({self.seconds:.2f} s)")
        return (text + "".join(f"\n  skipped {p}: {r}" for p, r in self.unreadable)
                + "".join(f"\n  listed without settings {p}: {n}" for p, n in self.noted))


def is_image_name(name: str) -> bool:
    return name.lower().endswith(".png") and not name.startswith(".")


def _image_folders(root: Path):
    """Every folder under the gallery that may hold images (the dated tree and imports)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        yield Path(dirpath), filenames


def reconcile_recent(gallery) -> ScanReport:
    """On open: only folders changed since the last reconcile (a save changes its folder's time)."""
    since = int(gallery.fact(RECONCILED_KEY, "0")) - CLOCK_SLACK_NS
    started = time.time_ns()
    changed = [folder for folder, _files in _image_folders(gallery.root)
               if folder != gallery.root and os.stat(folder).st_mtime_ns >= since]
    report = _reconcile(gallery, changed, started)
    if report.added or report.marked_missing:
        log.info("gallery reconciled on open: %s", report.summary())
    return report


def rescan(gallery) -> ScanReport:
    """Every folder: the full reconcile the user asks for (and the rebuild runs)."""
    started = time.time_ns()
    report = _reconcile(gallery, [p for p, _ in _image_folders(gallery.root)], started, everything=True)
    return report


def rebuild(gallery) -> ScanReport:
    """Forget the index and read it back from the files (favourites and tags from annotations.json)."""
    with gallery.transaction() as conn:
        conn.execute("DELETE FROM images")
        conn.execute("DELETE FROM prompts")
    report = rescan(gallery)
    restore_history(gallery)
    return report


def restore_history(gallery) -> None:
    """Prompt history back from the images: one entry per prompt, used as often as it has images."""
    # The settings of the newest image per prompt (SQLite takes the bare columns from the max() row).
    settings = ", ".join(f"'{name}', {'json(edit)' if name == 'edit' else name}" for name in INDEX_FIELDS
                         if name != "model")
    with gallery.transaction() as conn:
        conn.execute(f"""
            INSERT OR IGNORE INTO prompts (prompt, negative_prompt, settings, use_count, last_used)
            SELECT prompt, negative_prompt, json_object({settings}), count(*), max(created)
            FROM images WHERE prompt != '' GROUP BY prompt, negative_prompt""")


def _reconcile(gallery, folders: list[Path], started_ns: int, everything: bool = False) -> ScanReport:
    clock = time.perf_counter()
    report = ScanReport()
    indexed = _indexed(gallery, None if everything else folders)
    on_disk: set[str] = set()
    pending: list[tuple[Path, str]] = []
    for folder in folders:
        try:
            names = [e.name for e in os.scandir(folder) if e.is_file() and is_image_name(e.name)]
        except FileNotFoundError:
            continue
        for name in names:
            rel = gallery.relative(folder / name)
            on_disk.add(rel)
            if rel not in indexed and rel not in gallery.annotations.removed:
                pending.append((folder / name, rel))
    for start in range(0, len(pending), BATCH):
        _add_files(gallery, pending[start : start + BATCH], report)
    _mark(gallery, indexed, on_disk, report)
    gallery.set_fact(RECONCILED_KEY, str(started_ns))
    report.seconds = time.perf_counter() - clock
    return report


def _indexed(gallery, folders: list[Path] | None) -> dict[str, bool]:
    """rel path -> missing flag, for the whole index or for the direct children of some folders."""
    if folders is None:
        return dict(gallery.conn.execute("SELECT path, missing FROM images"))
    found: dict[str, bool] = {}
    for folder in folders:
        prefix = "" if folder == gallery.root else gallery.relative(folder) + "/"
        rows = gallery.conn.execute(
            "SELECT path, missing FROM images WHERE path >= ? AND path < ? AND instr(substr(path, ?), '/') = 0",
            (prefix, prefix + "\uffff", len(prefix) + 1))
        found.update(rows)
    return found


def _add_files(gallery, batch: list[tuple[Path, str]], report: ScanReport) -> None:
    with gallery.transaction():
        for path, rel in batch:
            try:
                stat = path.stat()
                info, meta = read_image_metadata(path)
            except FileNotFoundError:
                continue
            except (UnreadablePNG, OSError) as exc:
                report.unreadable.append((rel, str(exc)))
                continue
            report.noted.extend((rel, note) for note in meta.notes if note.startswith("metadata too large"))
            meta = replace(meta, request=meta.request.replace(width=info.width, height=info.height))  # pixels decide
            gallery.index_file(path, meta, created=meta.created or stat.st_mtime, stat=stat)
            report.added += 1


def _mark(gallery, indexed: dict[str, bool], on_disk: set[str], report: ScanReport) -> None:
    gone = [p for p, missing in indexed.items() if p not in on_disk and not missing]
    back = [p for p, missing in indexed.items() if p in on_disk and missing]
    if not gone and not back:
        return
    with gallery.transaction() as conn:
        conn.executemany("UPDATE images SET missing = 1 WHERE path = ?", [(p,) for p in gone])
        conn.executemany("UPDATE images SET missing = 0 WHERE path = ?", [(p,) for p in back])
    report.marked_missing, report.restored = len(gone), len(back)


def import_folder(gallery, folder: Path) -> ScanReport:
    """Copy a folder's PNGs (and subfolders') into `imported/<folder name>/` and index them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LatentStudioError(f"{folder} is not a folder.")
    target_root = gallery.root / IMPORTED / folder.name
    copied: list[Path] = []
    for dirpath, _dirs, files in os.walk(folder):
        for name in sorted(f for f in files if is_image_name(f)):
            source = Path(dirpath) / name
            target = target_root / Path(dirpath).relative_to(folder) / name
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".partial-{name}")
            try:
                shutil.copy2(source, tmp)
                os.replace(tmp, target)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise LatentStudioError(f"Could not copy {source} into the gallery: {exc.strerror or exc}.") from exc
            copied.append(target)
    report = ScanReport()
    clock = time.perf_counter()
    batch = [(p, gallery.relative(p)) for p in copied]
    for start in range(0, len(batch), BATCH):
        _add_files(gallery, batch[start : start + BATCH], report)
    report.seconds = time.perf_counter() - clock
    return report
