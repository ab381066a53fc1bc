"""What the gallery hands out: image records, prompt-history entries and the filter for listing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

IMAGE_COLUMNS = ("id", "path", "created", "prompt", "negative_prompt", "model", "seed", "steps", "guidance",
                 "width", "height", "scheduler", "source", "favourite", "tags", "missing")


@dataclass
class ImageRecord:
    id: int
    path: Path  # absolute
    created: float
    prompt: str = ""
    negative_prompt: str = ""
    model: str = ""
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    scheduler: str | None = None
    source: str = "none"
    favourite: bool = False
    tags: list[str] = field(default_factory=list)
    missing: bool = False

    @classmethod
    def from_row(cls, row, root: Path) -> "ImageRecord":
        values = dict(zip(IMAGE_COLUMNS, row))
        values["path"] = root / values["path"]
        values["favourite"], values["missing"] = bool(values["favourite"]), bool(values["missing"])
        values["tags"] = values["tags"].split()
        return cls(**values)

    def to_json(self) -> dict:
        data = {name: getattr(self, name) for name in IMAGE_COLUMNS}
        data["path"] = str(self.path)
        data["created"] = datetime.fromtimestamp(self.created).astimezone().isoformat(timespec="seconds")
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
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def fts_query(text: str) -> str:
    """Words a person types -> an FTS5 query: every word must match, as a prefix ("cat" finds "cats").

    Each word is quoted, so quotes, colons and operators in what was typed are searched for, never
    parsed as query syntax (which would raise on "a:b" or a lone quote).
    """
    words = [w.replace('"', '""') for w in text.split()]
    return " ".join(f'"{w}"*' for w in words if w.strip('"'))
