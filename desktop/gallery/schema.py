"""The gallery database's schema as numbered migrations.

`PRAGMA user_version` holds the number of migrations applied. Each migration runs in one
transaction after a backup copy of the file, so one that fails halfway leaves the old database as
it was; a database from a newer version of the app is refused and left untouched.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from desktop.errors import LatentStudioError

log = logging.getLogger(__name__)

MIGRATIONS: list[str] = [
    # 1: images, their tags, prompt history, full-text search over both, key/value facts.
    """
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,          -- relative to the gallery folder, '/'-separated
        created REAL NOT NULL,              -- unix time the image was made (or the file's mtime)
        prompt TEXT NOT NULL DEFAULT '',
        negative_prompt TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        seed INTEGER, steps INTEGER, guidance REAL, width INTEGER, height INTEGER, scheduler TEXT,
        source TEXT NOT NULL DEFAULT 'none', -- whose metadata: latent_studio, a1111, comfyui, invokeai, none
        favourite INTEGER NOT NULL DEFAULT 0,
        tags TEXT NOT NULL DEFAULT '',      -- space-separated, lower case; also in FTS
        missing INTEGER NOT NULL DEFAULT 0, -- the file is gone; kept until the user removes it
        file_size INTEGER, file_mtime_ns INTEGER
    );
    CREATE INDEX images_by_created ON images (created DESC, id DESC);
    CREATE INDEX images_by_model ON images (model, created DESC);
    CREATE INDEX images_favourite ON images (favourite, created DESC) WHERE favourite = 1;
    CREATE VIRTUAL TABLE images_fts USING fts5 (
        prompt, negative_prompt, tags, content='images', content_rowid='id', tokenize='unicode61'
    );
    CREATE TRIGGER images_ai AFTER INSERT ON images BEGIN
        INSERT INTO images_fts (rowid, prompt, negative_prompt, tags)
        VALUES (new.id, new.prompt, new.negative_prompt, new.tags);
    END;
    CREATE TRIGGER images_ad AFTER DELETE ON images BEGIN
        INSERT INTO images_fts (images_fts, rowid, prompt, negative_prompt, tags)
        VALUES ('delete', old.id, old.prompt, old.negative_prompt, old.tags);
    END;
    CREATE TRIGGER images_au AFTER UPDATE OF prompt, negative_prompt, tags ON images BEGIN
        INSERT INTO images_fts (images_fts, rowid, prompt, negative_prompt, tags)
        VALUES ('delete', old.id, old.prompt, old.negative_prompt, old.tags);
        INSERT INTO images_fts (rowid, prompt, negative_prompt, tags)
        VALUES (new.id, new.prompt, new.negative_prompt, new.tags);
    END;
    CREATE TABLE prompts (
        id INTEGER PRIMARY KEY,
        prompt TEXT NOT NULL,
        negative_prompt TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}', -- the last request's JSON
        use_count INTEGER NOT NULL DEFAULT 1,
        last_used REAL NOT NULL,
        pinned INTEGER NOT NULL DEFAULT 0,
        UNIQUE (prompt, negative_prompt)
    );
    CREATE INDEX prompts_by_use ON prompts (pinned DESC, last_used DESC);
    CREATE VIRTUAL TABLE prompts_fts USING fts5 (
        prompt, negative_prompt, content='prompts', content_rowid='id', tokenize='unicode61'
    );
    CREATE TRIGGER prompts_ai AFTER INSERT ON prompts BEGIN
        INSERT INTO prompts_fts (rowid, prompt, negative_prompt) VALUES (new.id, new.prompt, new.negative_prompt);
    END;
    CREATE TRIGGER prompts_ad AFTER DELETE ON prompts BEGIN
        INSERT INTO prompts_fts (prompts_fts, rowid, prompt, negative_prompt)
        VALUES ('delete', old.id, old.prompt, old.negative_prompt);
    END;
    CREATE TABLE facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: the window's job queue, so pending jobs survive a restart or a crash.
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        request TEXT NOT NULL,              -- GenerationRequest as JSON
        position REAL NOT NULL,             -- order in the queue; reordering rewrites it
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running')),
        created REAL NOT NULL
    );
    CREATE INDEX jobs_by_position ON jobs (position);
    """,
    # 3: jobs belong to the window that queued them (two windows on one gallery never run the same
    #    job), and a stored job that no longer validates is set aside instead of blocking startup.
    """
    CREATE TABLE jobs_v3 (
        id INTEGER PRIMARY KEY,
        request TEXT NOT NULL,              -- GenerationRequest as JSON
        position REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'set_aside')),
        created REAL NOT NULL,
        owner TEXT NOT NULL DEFAULT '',     -- the window instance that queued or adopted it
        problem TEXT NOT NULL DEFAULT ''    -- why it was set aside
    );
    INSERT INTO jobs_v3 (id, request, position, state, created) SELECT id, request, position, state, created FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_v3 RENAME TO jobs;
    CREATE INDEX jobs_by_owner ON jobs (owner, state, position);
    """,
    # 4: edits. `edit` is the request's Edit as JSON (NULL for text to image), naming its inputs by
    #    content hash; `pixels` is the hash of an image's own pixels where known, so lineage (what an
    #    image was made from, and what was made from it) is two lookups.
    """
    ALTER TABLE images ADD COLUMN edit TEXT;
    ALTER TABLE images ADD COLUMN pixels TEXT;
    CREATE INDEX images_by_pixels ON images (pixels) WHERE pixels IS NOT NULL;
    CREATE INDEX images_by_init ON images (json_extract(edit, '$.init_image')) WHERE edit IS NOT NULL;
    """,
]
LATEST = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def check_not_newer(conn: sqlite3.Connection, path: Path) -> None:
    version = schema_version(conn)
    if version > LATEST:
        raise LatentStudioError(
            f"The gallery database {path} was written by a newer version of Latent Studio (schema {version}, "
            f"this version knows up to {LATEST}). Update the app; the database was left untouched.")


def migrate(conn: sqlite3.Connection, path: Path, migrations: list[str] | None = None) -> None:
    """Bring the database up to date, one transaction per migration, after a backup copy."""
    migrations = MIGRATIONS if migrations is None else migrations
    check_not_newer(conn, path)
    version = schema_version(conn)
    if version >= len(migrations):
        return
    if version > 0:
        backup(conn, path.with_name(f"{path.name}.before-v{version + 1}.bak"))
    for number in range(version + 1, len(migrations) + 1):
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _statements(migrations[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise LatentStudioError(
                f"Updating the gallery database {path} to schema {number} failed ({exc}); "
                "it was left as it was.") from exc
        log.info("gallery database %s now at schema %d", path, number)


def backup(conn: sqlite3.Connection, target: Path) -> None:
    """A consistent copy through SQLite's backup API (safe while others read or write)."""
    with sqlite3.connect(target) as copy:
        conn.backup(copy)
    copy.close()


def _statements(script: str) -> list[str]:
    """Split a script into statements (executescript would commit behind our back)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
