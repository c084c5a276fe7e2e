"""Archive of results as Parquet files, queried with DuckDB (embedded analytical engine).

The archive agent appends each batch as one Parquet file under ``ARCHIVE_DIR``; any process can query the
files at any time (``babelstream query``) without locking the writer. Input is at-least-once, so the
``results`` view keeps one row per (utterance_id, kind, version).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from schemas.records import Result, ResultKind

COLUMNS = """
    session_id VARCHAR, utterance_id VARCHAR, utterance_index BIGINT, kind VARCHAR, text VARCHAR,
    language VARCHAR, translation VARCHAR, target_lang VARCHAR, backend VARCHAR, error_code VARCHAR,
    audio_start_ms BIGINT, audio_end_ms BIGINT, processing_ms INTEGER, latency_ms BIGINT,
    model VARCHAR, version VARCHAR, created_at_ms BIGINT
"""


class Archive:
    def __init__(self, directory: Path) -> None:
        import duckdb

        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._db = duckdb.connect(":memory:")
        self._db.execute(f"CREATE TEMP TABLE batch ({COLUMNS})")
        self._lock = threading.Lock()

    def insert(self, results: Iterable[Result]) -> int:
        rows = [_row(r) for r in results if r.kind is not ResultKind.REALTIME]
        if not rows:
            return 0
        name = f"results-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        with self._lock:
            self._db.execute("DELETE FROM batch")
            self._db.executemany(f"INSERT INTO batch VALUES ({', '.join(['?'] * 17)})", rows)
            tmp = self.dir / f".{name}"
            self._db.execute(f"COPY batch TO '{tmp}' (FORMAT parquet)")
            tmp.rename(self.dir / name)  # readers never see a half-written file
        return len(rows)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return query_archive(self.dir, sql)


def query_archive(directory: Path, sql: str) -> list[tuple[Any, ...]]:
    """Run SQL against the view ``results`` (one row per utterance, kind and version)."""
    import duckdb

    db = duckdb.connect(":memory:")
    try:
        if any(directory.glob("results-*.parquet")):
            db.execute(
                f"CREATE VIEW results AS SELECT * FROM read_parquet('{directory}/results-*.parquet') "
                "QUALIFY row_number() OVER (PARTITION BY utterance_id, kind, version ORDER BY created_at_ms DESC) = 1"
            )
        else:
            db.execute(f"CREATE TABLE results ({COLUMNS})")
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _row(r: Result) -> tuple[Any, ...]:
    tr = r.translation
    latency = r.created_at_ms - r.audio_created_at_ms if r.audio_created_at_ms else None
    return (
        r.session_id,
        r.utterance_id,
        r.utterance_index,
        str(r.kind),
        r.text,
        r.language,
        tr.text if tr else None,
        tr.target_lang if tr else r.target_lang,
        tr.backend if tr else None,
        r.error.code if r.error else None,
        r.audio_start_ms,
        r.audio_end_ms,
        r.processing_ms,
        latency,
        r.model,
        r.version,
        r.created_at_ms,
    )
