"""What the user said about images (favourites, tags, "remove from gallery"), kept beside the files.

The PNGs hold how each image was made; this small JSON file holds what the user decided about it,
so a lost database is rebuilt with favourites and tags back, and removed images stay removed.
Written atomically, like every other file here.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "annotations.json"


@dataclass
class Annotations:
    favourites: set[str] = field(default_factory=set)  # gallery-relative paths
    tags: dict[str, list[str]] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, root: Path) -> "Annotations":
        path = root / FILE_NAME
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(set(raw.get("favourites", [])), dict(raw.get("tags", {})), set(raw.get("removed", [])))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("Could not read %s (%s); favourites and tags come from the database only.", path, exc)
            return cls()

    def save(self, root: Path) -> None:
        data = {"favourites": sorted(self.favourites), "tags": {k: v for k, v in sorted(self.tags.items()) if v},
                "removed": sorted(self.removed)}
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".annotations-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, root / FILE_NAME)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
