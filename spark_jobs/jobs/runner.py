"""Run one job with its manifest and end-of-run summary, whatever happens."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spark_jobs.defs.models import Definitions
from spark_jobs.engine.profile import Profile
from spark_jobs.engine.session import Engine, open_engine
from spark_jobs.quality import gx
from spark_jobs.errors import EXIT_INTERNAL, TilewiseError, attach_manifest
from spark_jobs.storage.manifest import Run, consistency_line
from spark_jobs.storage.tables import Warehouse


def warehouse_for(engine: Engine, run_id: str | None = None) -> Warehouse:
    p = engine.profile
    return Warehouse(engine.spark, p.warehouse_path, engine.writer, lock_timeout_s=p.lock_timeout_s, run_id=run_id)


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
    with recorded(run, defs):
        _run_job(engine, defs, run, job, warehouse, job_args)


def run_command(profile: Profile, defs: Definitions, run: Run, job: Callable[..., None], **job_args: Any) -> None:
    """Open the profile's engine and run one job in it; an engine that fails to start or stop is
    recorded in the run's manifest like any other failure."""
    run.engine, run.profile = profile.engine, profile.summary()
    with recorded(run, defs), open_engine(profile) as engine:
        _run_job(engine, defs, run, job, None, job_args)


def _run_job(
    engine: Engine, defs: Definitions, run: Run, job: Callable[..., None], warehouse: Warehouse | None,
    job_args: dict[str, Any],
) -> None:
    wh = warehouse or warehouse_for(engine)
    wh.run_id = run.run_id  # every commit of this run names it (commitInfo.userMetadata)
    run.engine, run.profile = engine.name, engine.profile.summary()
    run.say(f"{run.command} on {engine.name} (Delta, {engine.delta_writer}) -> {wh.root}")
    gx.preload()  # every engine job validates before it publishes: import GE behind its work
    job(engine, wh, defs, run, **job_args)


@contextmanager
def recorded(run: Run, defs: Definitions) -> Iterator[None]:
    """Run the body as `run`: its status, manifest and summary are written whatever happens.

    A failure tilewise classified (bad input, validation, busy table) is `failed`; anything else
    is `error`, and its traceback goes into the manifest. The exception leaves with the
    manifest's path attached, for the CLI's one-line message.
    """
    run.definitions = dict(defs.files)
    try:
        yield
    except BaseException as exc:
        expected = isinstance(exc, TilewiseError) and exc.exit_code != EXIT_INTERNAL
        run.status = "failed" if expected else "error"
        run.error = str(exc) if isinstance(exc, TilewiseError) else f"{type(exc).__name__}: {exc}"
        if not expected:
            run.traceback = "".join(traceback.format_exception(exc))
        try:
            attach_manifest(exc, _finish(run))
        except OSError as lost:  # the error that ended the run matters more than its record
            print(f"tilewise: the run's manifest could not be written: {lost}", file=sys.stderr)
        raise
    run.status = "ok"
    _finish(run)


def _finish(run: Run) -> Path:
    path = run.write_manifest()
    print_summary(run, path)
    return path


def print_summary(run: Run, manifest_path: Path) -> None:
    if run.quiet:
        return
    m = run.manifest()
    lines = [f"== tilewise {run.command}: {run.status.upper()} in {m['seconds']:.1f}s on {run.engine or '-'}"]
    for table, out in run.outputs.items():
        if out.get("unchanged"):
            lines.append(f"   {table}: unchanged at version {out.get('version')} (nothing to write)")
        else:
            lines.append(f"   wrote {table}: version {out.get('version')}, {out.get('rows') or 0:,} rows")
    for reason, rows in run.dropped.items():
        lines.append(f"   dropped {rows:,} rows: {reason}")
    for table, v in run.validation.items():
        state = "passed" if v["success"] else "FAILED"
        lines.append(f"   validation {table}: {state} ({v['expectations']} expectations, {v['seconds']:.1f}s)")
    if run.validation and m["validation_share"] is not None:
        lines.append(f"   validation took {m['validation_seconds']:.1f}s, {m['validation_share']:.0%} of the run")
    for table, values in run.consistency.items():
        for logged, c in values.items():
            lines.append(f"   {table}: {consistency_line(logged, c)}")
    for note in run.notes:
        lines.append(f"   note: {note}")
    if run.error:
        lines.append(f"   error: {run.error.splitlines()[0]}")
    lines.append(f"   manifest: {manifest_path}")
    print("\n".join(lines), file=sys.stderr)
