"""The gallery: PNG files under dated folders (the truth) and `gallery.db`, the SQLite index over them.

One Gallery per thread (SQLite connections stay on the thread that opened them). Opening checks
the database, applies migrations, rebuilds it from the files when it is corrupt, and reconciles the
folders that changed since the last visit, so images saved just before a crash are listed; it never
reads every image file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from desktop.errors import LatentStudioError
from desktop.gallery import schema
from desktop.gallery.annotations import Annotations
from desktop.gallery.inputs import InputStore, normalised, pixel_hash
from desktop.gallery.files import dated_folder, save_png_atomic, why, write_image
from desktop.gallery.metadata import ImageMetadata
from desktop.gallery.records import IMAGE_COLUMNS, ImageFilter, ImageRecord, PromptEntry, to_columns

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LineageInput:
    role: str  # "init image" or "mask"
    digest: str
    path: Path  # the kept copy in the gallery's inputs
    record: ImageRecord | None  # the gallery image with these pixels, when there is one


@dataclass(frozen=True)
class Lineage:
    made_from: tuple[LineageInput, ...]
    made_into: tuple[ImageRecord, ...]

DB_NAME = "gallery.db"


class GalleryBusy(LatentStudioError):
    """Another process holds the database longer than the busy timeout."""


class Gallery:
    def __init__(self, root: Path, busy_timeout: float = 10.0, reconcile: bool = True):
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        self._resolved_root = self.root.resolve()  # relative() runs once per file in a rescan
        self.busy_timeout = busy_timeout
        self.rebuilt_from_files = False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LatentStudioError(f"Cannot create the gallery folder {self.root}: {exc.strerror or exc}.") from exc
        self.conn = self._open_database()
        self.annotations = Annotations.load(self.root)
        from desktop.gallery import scan

        self.last_reconcile = scan.ScanReport()  # what opening found (the window reports it)
        if self.rebuilt_from_files:
            self.last_reconcile = scan.rescan(self)
            scan.restore_history(self)
        elif reconcile:
            self.last_reconcile = scan.reconcile_recent(self)

    # --- opening -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=self.busy_timeout, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return conn

    def _open_database(self) -> sqlite3.Connection:
        conn = None
        try:
            conn = self._connect()
            schema.check_not_newer(conn, self.db_path)  # before anything writes to the file
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL: a crash loses no committed row
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            # A new (or deleted) database is filled from the files, history included.
            self.rebuilt_from_files = schema.schema_version(conn) == 0
            schema.migrate(conn, self.db_path)
            return conn
        except sqlite3.OperationalError as exc:
            if conn is not None:
                conn.close()
            raise self._operational_error(exc) from exc
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            return self._replace_corrupt_database(exc)
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    def _replace_corrupt_database(self, exc: Exception) -> sqlite3.Connection:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            part = self.db_path.with_name(DB_NAME + suffix)
            if part.exists():
                os.replace(part, self.db_path.with_name(f"{DB_NAME}.corrupt-{stamp}{suffix}"))
        log.warning("The gallery database was damaged (%s); kept as %s.corrupt-%s and rebuilt from the images.",
                    exc, DB_NAME, stamp)
        self.rebuilt_from_files = True
        conn = self._connect()
        conn.execute("PRAGMA journal_mode = WAL")
        schema.migrate(conn, self.db_path)
        return conn

    def _operational_error(self, exc: sqlite3.OperationalError) -> LatentStudioError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return GalleryBusy(f"The gallery database {self.db_path} is busy (another Latent Studio or tool is "
                               f"writing to it) and stayed busy for {self.busy_timeout:g} s; try again.")
        if "full" in text:
            return LatentStudioError(f"The disk holding {self.db_path} is full; free some space and try again. "
                                     "Images already saved are kept.")
        return LatentStudioError(f"Cannot use the gallery database {self.db_path}: {text}.")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self):
        """One write transaction; SQLite errors become messages a person can act on."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._operational_error(exc) from exc
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self.conn.execute("ROLLBACK")
            raise self._operational_error(exc) from exc
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    # --- adding ------------------------------------------------------------------------------

    def save_image(self, image, request, model: dict, strip_metadata: bool = False,
                   networks: tuple[dict, ...] = (), grid: dict | None = None) -> ImageRecord:
        """Write the PNG (atomically) and index it; the file is on disk before the index knows it.

        `request` is what made this one image (its own seed, count 1); `model` is ModelInfo.as_dict().
        """
        now = time.time()
        path = write_image(image, dated_folder(self.root, datetime.fromtimestamp(now)), request, model,
                           strip_metadata, now, networks, grid)
        made = request.replace(model=model.get("name") or None, width=image.width, height=image.height)
        meta = ImageMetadata(source="latent_studio", created=now, request=made)
        try:
            with self.transaction() as conn:
                image_id = self.index_file(path, meta, created=now)
                conn.execute("UPDATE images SET pixels = ? WHERE id = ?", (pixel_hash(image), image_id))
        except LatentStudioError as exc:
            raise LatentStudioError(f"The image was saved as {path}, but the gallery could not list it: {exc} "
                                    "It will be listed the next time the gallery opens.") from exc
        return ImageRecord(image_id, path, now, made, meta.source)

    def index_file(self, path: Path, meta: ImageMetadata, created: float, stat: os.stat_result | None = None) -> int:
        """Insert or refresh one file's row (inside a transaction the caller holds)."""
        rel = self.relative(path)
        stat = stat or path.stat()
        note = self.annotations
        values = to_columns(meta.request)
        values.update(source=meta.source, path=rel, created=created,
                      favourite=int(rel in note.favourites), tags=" ".join(note.tags.get(rel, [])), missing=0,
                      file_size=stat.st_size, file_mtime_ns=stat.st_mtime_ns)
        columns = ", ".join(values)
        updates = ", ".join(f"{k} = excluded.{k}" for k in values if k not in ("path", "favourite", "tags"))
        row = self.conn.execute(
            f"INSERT INTO images ({columns}) VALUES ({', '.join('?' * len(values))}) "
            f"ON CONFLICT (path) DO UPDATE SET {updates} RETURNING id", list(values.values())).fetchone()
        return row[0]

    # --- edits: their inputs and lineage -----------------------------------------------------

    @property
    def inputs(self) -> InputStore:
        return InputStore(self.root)

    def store_input(self, image, mask: bool = False, source: Path | None = None) -> str:
        """Keep an edit's init image or mask; returns its content hash. When it came from a gallery
        image (`source`), that image learns its hash, so lineage can find it."""
        image = normalised(image, mask)
        digest = self.inputs.put(image)
        if source is not None and not mask:
            try:
                rel = self.relative(source)
            except LatentStudioError:
                return digest  # a file from outside the gallery
            with self.transaction() as conn:
                conn.execute("UPDATE images SET pixels = ? WHERE path = ?", (digest, rel))
        return digest

    def lineage(self, record: ImageRecord) -> Lineage:
        """What an image was made from (its inputs, and the gallery images they are) and what was
        made from it."""
        edit = record.request.edit
        parents = []
        if edit is not None:
            for role, digest in (("init image", edit.init_image), ("mask", edit.mask)):
                if digest:
                    parents.append(LineageInput(role, digest, self.inputs.path(digest), self._with_pixels(digest)))
        children = []
        digest = self._pixels_of(record)
        if digest:
            rows = self.conn.execute(
                f"SELECT {', '.join(IMAGE_COLUMNS)} FROM images WHERE edit IS NOT NULL AND "
                "json_extract(edit, '$.init_image') = ? ORDER BY created DESC, id DESC", (digest,)).fetchall()
            children = [ImageRecord.from_row(row, self.root) for row in rows]
        return Lineage(tuple(parents), tuple(children))

    def _with_pixels(self, digest: str) -> ImageRecord | None:
        row = self.conn.execute(f"SELECT {', '.join(IMAGE_COLUMNS)} FROM images WHERE pixels = ? "
                                "ORDER BY created LIMIT 1", (digest,)).fetchone()
        return ImageRecord.from_row(row, self.root) if row else None

    def _pixels_of(self, record: ImageRecord) -> str | None:
        row = self.conn.execute("SELECT pixels FROM images WHERE id = ?", (record.id,)).fetchone()
        if row and row[0]:
            return row[0]
        if not self.conn.execute("SELECT 1 FROM images WHERE edit IS NOT NULL LIMIT 1").fetchone():
            return None  # nothing in this gallery was made from another image: no need to read the file
        from PIL import Image

        try:
            with Image.open(record.path) as opened:
                digest = pixel_hash(normalised(opened))
        except OSError:
            return None
        with self.transaction() as conn:
            conn.execute("UPDATE images SET pixels = ? WHERE id = ?", (digest, record.id))
        return digest

    def relative(self, path: Path) -> str:
        try:
            return Path(path).resolve().relative_to(self._resolved_root).as_posix()
        except ValueError:
            raise LatentStudioError(f"{path} is not inside the gallery folder {self.root}.") from None

    def record_prompt(self, request) -> None:
        """Prompt history: one entry per (prompt, negative), with its latest settings and a use count."""
        settings = json.dumps(request.to_dict(), ensure_ascii=False)
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO prompts (prompt, negative_prompt, settings, last_used) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (prompt, negative_prompt) DO UPDATE SET settings = excluded.settings, "
                "use_count = use_count + 1, last_used = excluded.last_used",
                (request.prompt, request.negative_prompt, settings, time.time()))

    # --- reading -----------------------------------------------------------------------------

    def page(self, filter: ImageFilter = ImageFilter(), offset: int = 0, limit: int = 100) -> list[ImageRecord]:
        """Newest first."""
        where, params = filter.where()
        rows = self.conn.execute(
            f"SELECT {', '.join(IMAGE_COLUMNS)} FROM images{where} ORDER BY created DESC, id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset]).fetchall()
        return [ImageRecord.from_row(row, self.root) for row in rows]

    def matching(self, filter: ImageFilter, image_ids: list[int]) -> list[ImageRecord]:
        """Those of these images the filter shows, newest first."""
        if not image_ids:
            return []
        where, params = filter.where()
        where += (" AND " if where else " WHERE ") + f"images.id IN ({', '.join('?' * len(image_ids))})"
        rows = self.conn.execute(f"SELECT {', '.join(IMAGE_COLUMNS)} FROM images{where} ORDER BY created DESC, id DESC",
                                 [*params, *image_ids]).fetchall()
        return [ImageRecord.from_row(row, self.root) for row in rows]

    def count(self, filter: ImageFilter = ImageFilter()) -> int:
        where, params = filter.where()
        return self.conn.execute(f"SELECT count(*) FROM images{where}", params).fetchone()[0]

    def get(self, image_id: int) -> ImageRecord:
        row = self.conn.execute(f"SELECT {', '.join(IMAGE_COLUMNS)} FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise LatentStudioError(f"No image with id {image_id} in the gallery.")
        return ImageRecord.from_row(row, self.root)

    def find(self, path: Path) -> ImageRecord | None:
        row = self.conn.execute(f"SELECT {', '.join(IMAGE_COLUMNS)} FROM images WHERE path = ?",
                                (self.relative(path),)).fetchone()
        return ImageRecord.from_row(row, self.root) if row else None

    def loras(self) -> list[str]:
        """The LoRAs the gallery's prompts name, for the filter menu."""
        from desktop.engine.loras import uses_in

        names = set()
        for (prompt,) in self.conn.execute("SELECT DISTINCT prompt FROM images WHERE prompt LIKE '%<lora:%'"):
            try:
                names.update(use.name for use in uses_in(prompt))
            except LatentStudioError:  # a tag with a weight that is not a number: still a name
                continue
        return sorted(names, key=str.lower)

    def models(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT model FROM images WHERE model != '' ORDER BY model")]

    def history(self, text: str = "", limit: int = 200) -> list[PromptEntry]:
        """Pinned first, then most recently used; `text` searches prompts word by word."""
        from desktop.gallery.records import fts_query

        where, params = "", []
        if text.strip():
            where, params = " WHERE id IN (SELECT rowid FROM prompts_fts WHERE prompts_fts MATCH ?)", [fts_query(text)]
        rows = self.conn.execute(
            "SELECT id, prompt, negative_prompt, settings, use_count, last_used, pinned FROM prompts"
            f"{where} ORDER BY pinned DESC, last_used DESC LIMIT ?", [*params, limit]).fetchall()
        return [PromptEntry.from_row(row) for row in rows]

    # --- changing ----------------------------------------------------------------------------

    def set_favourite(self, image_ids: list[int], favourite: bool) -> None:
        with self.transaction() as conn:
            for record in self._records(image_ids):
                conn.execute("UPDATE images SET favourite = ? WHERE id = ?", (int(favourite), record.id))
                rel = self.relative(record.path)
                (self.annotations.favourites.add if favourite else self.annotations.favourites.discard)(rel)
            self.annotations.save(self.root)  # inside: a file that cannot be written undoes the rows too

    def set_tags(self, image_id: int, tags: list[str]) -> None:
        clean = sorted({t.strip().lower() for t in tags if t.strip()})
        record = self.get(image_id)
        with self.transaction() as conn:
            conn.execute("UPDATE images SET tags = ? WHERE id = ?", (" ".join(clean), image_id))
            self.annotations.tags[self.relative(record.path)] = clean
            self.annotations.save(self.root)

    def set_pinned(self, prompt_id: int, pinned: bool) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE prompts SET pinned = ? WHERE id = ?", (int(pinned), prompt_id))

    def remove(self, image_ids: list[int]) -> int:
        """Remove from the gallery, keep the file; it stays removed after a rescan or rebuild."""
        records = self._records(image_ids)
        with self.transaction() as conn:
            for record in records:
                conn.execute("DELETE FROM images WHERE id = ?", (record.id,))
                self.annotations.removed.add(self.relative(record.path))
            self.annotations.save(self.root)
        return len(records)

    def delete_files(self, image_ids: list[int]) -> int:
        """Move the files to the OS trash (recoverable), then forget them."""
        from send2trash import send2trash
        from send2trash.exceptions import TrashPermissionError

        records = self._records(image_ids)
        for record in records:
            if record.path.exists():
                try:
                    send2trash(str(record.path))
                except (OSError, TrashPermissionError) as exc:
                    raise LatentStudioError(f"Could not move {record.path} to the trash ({exc}); nothing else was "
                                            "deleted after it.") from exc
            with self.transaction() as conn:
                conn.execute("DELETE FROM images WHERE id = ?", (record.id,))
        return len(records)

    def export(self, image_ids: list[int], destination: Path, metadata: bool = True) -> list[Path]:
        """Copy images out; without metadata they are re-encoded with no text chunks at all."""
        from PIL import Image

        records = self._records(image_ids)
        written = []
        try:
            destination.mkdir(parents=True, exist_ok=True)
            for record in records:
                if not record.path.exists():
                    raise LatentStudioError(f"{record.path} is missing from disk; it cannot be exported.")
                if metadata:
                    target = _free_name(destination, record.path.name)
                    shutil.copy2(record.path, target)
                else:
                    with Image.open(record.path) as image:
                        target = save_png_atomic(image.convert("RGBA" if "A" in image.getbands() else "RGB"),
                                                 destination, record.path.stem, None)
                written.append(target)
        except OSError as exc:
            done = f" ({len(written)} exported before it)" if written else ""
            raise LatentStudioError(f"Cannot export to {destination}: {why(exc)}{done}.") from exc
        return written

    def _records(self, image_ids: list[int]) -> list[ImageRecord]:
        return [self.get(i) for i in image_ids]

    # --- facts -------------------------------------------------------------------------------

    def fact(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM facts WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_fact(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO facts (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                          "value = excluded.value", (key, value))


def _free_name(folder: Path, name: str) -> Path:
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, n = folder / name, 2
    while candidate.exists():
        candidate, n = folder / f"{stem}-{n}{suffix}", n + 1
    return candidate


def gallery_root(settings) -> Path:
    from desktop import paths

    return Path(settings.gallery_dir).expanduser() if settings.gallery_dir else paths.default_gallery_dir()


def open_gallery(settings=None, **kwargs) -> Gallery:
    """The user's gallery, where settings say (default: the data dir)."""
    from desktop.settings import load_settings

    return Gallery(gallery_root(settings or load_settings()), **kwargs)
