"""What the gallery hands out: image records, prompt-history entries and the filter for listing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from desktop.engine.request import IMAGE_FIELDS, Edit, GenerationRequest
from desktop.gallery.metadata import ImageMetadata

# The index's image columns: the settings come from the request type itself, so a new setting needs
# that field, one migration adding its column, and the control that edits it.
INDEX_FIELDS = IMAGE_FIELDS
IMAGE_COLUMNS = ("id", "path", "created", *INDEX_FIELDS, "source", "favourite", "tags", "missing")


def to_columns(request: GenerationRequest) -> dict:
    """A request's settings as index column values (SQLite has no 2^64 integers or nested values)."""
    values = {name: getattr(request, name) for name in INDEX_FIELDS}
    values.update(model=values["model"] or "", seed=seed_to_column(values["seed"]),
                  edit=json.dumps(request.to_dict()["edit"]) if request.edit is not None else None)
    return values


def from_columns(values: dict) -> GenerationRequest:
    settings = {name: values[name] for name in INDEX_FIELDS}
    settings["model"] = settings["model"] or None  # stored as '' when unknown
    settings["seed"] = seed_from_column(settings["seed"])
    settings["edit"] = Edit.from_dict(json.loads(settings["edit"])) if settings["edit"] else None
    return GenerationRequest(**settings)


def seed_to_column(seed):
    """SQLite integers are signed 64-bit: seeds from 2^63 up (ComfyUI's range) are stored wrapped."""
    return seed - 2**64 if isinstance(seed, int) and seed >= 2**63 else seed


def seed_from_column(value):
    return value + 2**64 if isinstance(value, int) and value < 0 else value


@dataclass(frozen=True)
class ImageRecord:
    """One row of the index: a file, the request that made it (as its metadata says), and annotations."""

    id: int
    path: Path  # absolute
    created: float
    request: GenerationRequest = GenerationRequest()
    source: str = "none"
    favourite: bool = False
    tags: tuple[str, ...] = ()
    missing: bool = False

    @classmethod
    def from_row(cls, row, root: Path) -> "ImageRecord":
        values = dict(zip(IMAGE_COLUMNS, row))
        return cls(id=values["id"], path=root / values["path"], created=values["created"],
                   request=from_columns(values), source=values["source"],
                   favourite=bool(values["favourite"]), tags=tuple(values["tags"].split()),
                   missing=bool(values["missing"]))

    def metadata(self) -> ImageMetadata:
        return ImageMetadata(source=self.source, created=self.created, request=self.request)

    def to_json(self) -> dict:
        data = self.request.to_dict()
        data.pop("count")
        data.update(id=self.id, path=str(self.path), source=self.source, favourite=self.favourite,
                    tags=list(self.tags), missing=self.missing,
                    created=datetime.fromtimestamp(self.created).astimezone().isoformat(timespec="seconds"))
        return data


@dataclass
class PromptEntry:
    id: int
    prompt: str
    negative_prompt: str
    settings: dict
    use_count: int
    last_used: float
    pinned: bool

    @classmethod
    def from_row(cls, row) -> "PromptEntry":
        id_, prompt, negative, settings, count, last, pinned = row
        try:
            settings = json.loads(settings)
        except ValueError:
            settings = {}
        return cls(id_, prompt, negative, settings, count, last, bool(pinned))

    def to_json(self) -> dict:
        return {**self.__dict__, "last_used": datetime.fromtimestamp(self.last_used).astimezone().isoformat(timespec="seconds")}


@dataclass(frozen=True)
class ImageFilter:
    """Everything the gallery can narrow a listing by; empty means everything."""

    text: str = ""  # full-text search over prompt, negative prompt and tags
    model: str | None = None
    favourites_only: bool = False
    since: float | None = None  # unix time, inclusive
    until: float | None = None  # unix time, exclusive
    width: int | None = None
    height: int | None = None
    include_missing: bool = True
    lora: str | None = None  # only images whose prompt applies this LoRA (<lora:NAME...>)

    def where(self) -> tuple[str, list]:
        clauses, params = [], []
        if self.text.strip():
            clauses.append("images.id IN (SELECT rowid FROM images_fts WHERE images_fts MATCH ?)")
            params.append(fts_query(self.text))
        for column, value in (("model", self.model), ("width", self.width), ("height", self.height)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.favourites_only:
            clauses.append("favourite = 1")
        if self.since is not None:
            clauses.append("created >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("created < ?")
            params.append(self.until)
        if not self.include_missing:
            clauses.append("missing = 0")
        if self.lora:
            escaped = self.lora.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("(prompt LIKE ? ESCAPE '\\' OR prompt LIKE ? ESCAPE '\\')")
            params += [f"%<lora:{escaped}:%", f"%<lora:{escaped}>%"]
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def fts_query(text: str) -> str:
    """Words a person types -> an FTS5 query: every word must match, as a prefix ("cat" finds "cats").

    Each word is quoted, so quotes, colons and operators in what was typed are searched for, never
    parsed as query syntax (which would raise on "a:b" or a lone quote).
    """
    words = [w.replace('"', '""') for w in text.split()]
    return " ".join(f'"{w}"*' for w in words if w.strip('"'))
