"""Small builders shared by engine and e2e tests: data files, definitions, running jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime, timezone
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


# -- end-to-end: the `tilewise` command in a subprocess, and tables read back without Spark ------
REPO = Path(__file__).resolve().parents[1]
TILEWISE = [sys.executable, "-m", "spark_jobs.cli"]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a tilewise subprocess: UTC, and no Connect mode leaking from the tests."""
    env = {**os.environ, "TZ": "UTC", **extra}
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    return env


def tilewise(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*TILEWISE, *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def run_python(code: str, timeout: int = 120) -> str:
    """Run `code` (dedented) in a fresh interpreter, for process state such as what is imported;
    its stdout, after asserting it exited 0."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def table_content(warehouse: Path, table: str) -> list[str]:
    """Every row of the Delta table's latest version as sorted text, read with `deltalake`.

    Read with pyarrow (pandas turns nested timestamps into integers) and normalised, so the same
    rows written by any engine give the same text.
    """
    from deltalake import DeltaTable

    data = DeltaTable(str(warehouse / table)).to_pyarrow_table()
    columns = sorted(data.column_names)
    rows = data.select(columns).to_pylist()
    return sorted(repr(tuple(str(_plain(row[c])) for c in columns)) for row in rows)


def _plain(value: Any) -> Any:
    """Nested values as plain lists and dicts, timestamps as naive UTC datetimes."""
    if isinstance(value, datetime):  # pandas.Timestamp too
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return datetime.fromisoformat(value.isoformat())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def manifests(warehouse: Path, command: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((warehouse / "_runs").glob(f"*-{command}-*.json"))]
