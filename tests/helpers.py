"""Small builders shared by engine and e2e tests: data files, definitions, running jobs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from spark_jobs.defs.loader import load_definitions
from spark_jobs.defs.models import Definitions
from spark_jobs.jobs.runner import execute
from spark_jobs.storage.manifest import Run

EVENTS = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.string()),
        ("kind", pa.string()),
        ("value", pa.float64()),
        ("ts", pa.timestamp("us")),
    ]
)
IMPRESSIONS = pa.schema(
    [
        ("impression_id", pa.string()),
        ("user_id", pa.string()),
        ("ts", pa.timestamp("us")),
        ("feature_watermark", pa.timestamp("us")),
    ]
)
LABELS = pa.schema([("impression_id", pa.string()), ("ts", pa.timestamp("us")), ("action", pa.string())])


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path)
    return path


def write_defs(root: Path, text: str, sql: dict[str, str] | None = None) -> Path:
    defs = root / "feature_defs"
    defs.mkdir(parents=True, exist_ok=True)
    (defs / "defs.yaml").write_text(text)
    for name, body in (sql or {}).items():
        (root / "sql").mkdir(exist_ok=True)
        (root / "sql" / name).write_text(body)
    return defs


def load(defs_dir: Path, data_root: Path) -> Definitions:
    return load_definitions(defs_dir, data_root=str(data_root))


def run_job(engine, warehouse, defs: Definitions, command: str, job: Callable[..., None], **kw: Any) -> Run:  # type: ignore[no-untyped-def]
    run = Run(command, warehouse.root, args={k: str(v) for k, v in kw.items()}, quiet=True)
    execute(engine, defs, run, job, warehouse=warehouse, **kw)
    return run


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)
