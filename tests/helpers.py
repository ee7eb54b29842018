"""Small builders shared by engine and e2e tests: data files, definitions, running jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def table_content(warehouse: Path, table: str) -> list[str]:
    """Every row of the table's latest version as sorted text (Delta, or tilewise's Parquet log)."""
    import pandas as pd

    path = warehouse / table
    log = sorted((path / "_tilewise_log").glob("*.json"))
    if log:
        df = pd.read_parquet(path / json.loads(log[-1].read_text())["data"])
    else:
        from deltalake import DeltaTable

        df = DeltaTable(str(path)).to_pandas()
    df = df[sorted(df.columns)]
    for c in df.columns:  # same instants either way; only the writers' tz annotation differs
        if isinstance(df[c].dtype, pd.DatetimeTZDtype):
            df[c] = df[c].dt.tz_convert(None)
        if str(df[c].dtype).startswith("datetime64"):
            df[c] = df[c].astype("datetime64[us]")
    return sorted(map(repr, df.astype(str).itertuples(index=False)))


def manifests(warehouse: Path, command: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((warehouse / "_runs").glob(f"*-{command}-*.json"))]
