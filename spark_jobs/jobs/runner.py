"""Run one job with its manifest and end-of-run summary, whatever happens."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spark_jobs.defs.models import Definitions
from spark_jobs.engine.session import Engine
from spark_jobs.errors import TilewiseError
from spark_jobs.storage.manifest import Run
from spark_jobs.storage.tables import Warehouse


def warehouse_for(engine: Engine) -> Warehouse:
    p = engine.profile
    return Warehouse(engine.spark, p.warehouse_path, p.table_format, lock_timeout_s=p.lock_timeout_s)


def execute(
    engine: Engine,
    defs: Definitions,
    run: Run,
    job: Callable[..., None],
    *,
    warehouse: Warehouse | None = None,
    **job_args: Any,
) -> None:
    """`job(engine, warehouse, defs, run, **job_args)`; the manifest and summary are always written."""
    wh = warehouse or warehouse_for(engine)
    run.engine = engine.name
    run.say(f"{run.command} on {engine.name} ({wh.format}) -> {wh.root}")
    with recorded(run, defs):
        job(engine, wh, defs, run, **job_args)


@contextmanager
def recorded(run: Run, defs: Definitions) -> Iterator[None]:
    """Run the body as `run`: its status, manifest and summary are written whatever happens."""
    run.definitions = dict(defs.files)
    try:
        yield
        run.status = "ok"
    except TilewiseError as exc:
        run.status, run.error = "failed", str(exc)
        raise
    except BaseException as exc:
        run.status, run.error = "error", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        print_summary(run, run.write_manifest())


def print_summary(run: Run, manifest_path: Path) -> None:
    if run.quiet:
        return
    m = run.manifest()
    lines = [f"== tilewise {run.command}: {run.status.upper()} in {m['seconds']:.1f}s on {run.engine or '-'}"]
    for table, out in run.outputs.items():
        lines.append(f"   wrote {table}: version {out.get('version')}, {out.get('rows', 0):,} rows")
    for reason, rows in run.dropped.items():
        lines.append(f"   dropped {rows:,} rows: {reason}")
    for table, v in run.validation.items():
        state = "passed" if v["success"] else "FAILED"
        lines.append(f"   validation {table}: {state} ({v['expectations']} expectations, {v['seconds']:.1f}s)")
    if run.validation and m["validation_share"] is not None:
        lines.append(f"   validation took {m['validation_seconds']:.1f}s, {m['validation_share']:.0%} of the run")
    for note in run.notes:
        lines.append(f"   note: {note}")
    if run.error:
        lines.append(f"   error: {run.error.splitlines()[0]}")
    lines.append(f"   manifest: {manifest_path}")
    print("\n".join(lines), file=sys.stderr)
