"""Write-audit-publish: staged output is validated before it becomes a table's new version.

On failure nothing is published (the table keeps its version), and the staged rows and the
Great Expectations report stay in the run's folder (`_runs/<run_id>/`). Every job that writes a
table stages its rows under `staged/`, then calls `validate_and_publish`, then `discard_staged`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pyspark.sql import DataFrame

from spark_jobs.errors import ValidationFailed
from spark_jobs.quality.gx import ValidationReport, validate_dataframe
from spark_jobs.storage.manifest import Run
from spark_jobs.storage.tables import WriteResult


def audit(run: Run, table: str, df: DataFrame, expectations: Sequence[Mapping[str, Any]], *, engine: str) -> ValidationReport:
    """Validate `df` (staged output of `table`) and record the outcome in the run: one entry per
    table, whose time adds up when a run validates the table more than once (a backfill's chunks)."""
    with run.step(f"validate {table} ({len(expectations)} expectations)"):
        report = validate_dataframe(
            df, expectations, suite_name=table.replace("/", "."), report_dir=run.dir / "report"
        )
    before = run.validation.get(table)
    run.validation[table] = {
        "success": report.success,
        "expectations": len(report.results),
        "failed": [f"{r.describe()}: {r.observed}" for r in report.failed],
        "seconds": round(report.seconds, 3),
        "report": str(report.page_path or report.report_path) if (report.page_path or report.report_path) else None,
        "engine": engine,
    }
    if before is not None:
        run.validation[table]["seconds"] = round(run.validation[table]["seconds"] + before["seconds"], 3)
    for line in report.summary_lines():
        run.say(f"  {table}: {line}")
    return report


def require(run: Run, report: ValidationReport, extra: Sequence[str] = ()) -> None:
    """Fail (nothing published) unless `report` passed and no `extra` check (one line each) failed."""
    if report.success and not extra:
        return
    where = report.page_path or report.report_path
    failed = len(report.failed) + len(extra)
    lines = [*report.summary_lines(), *(f"FAILED {line}" for line in extra)]
    raise ValidationFailed(
        f"validation failed ({failed} of {len(report.results) + len(extra)} {'checks' if extra else 'expectations'}); nothing was "
        f"published. Rejected rows: {run.dir / 'staged'}; report: {where}\n  " + "\n  ".join(lines)
    )


def publish(run: Run, report: ValidationReport, write: Callable[[], WriteResult]) -> WriteResult:
    """Run `write` only if `report` passed; otherwise keep everything for inspection and fail."""
    require(run, report)
    return write()


def validate_and_publish(
    run: Run,
    table: str,
    staged: DataFrame,
    expectations: Sequence[Mapping[str, Any]],
    write: Callable[[], WriteResult],
    *,
    engine: str,
    label: str,
    alongside: Callable[[], Callable[[], None]] | None = None,
) -> WriteResult:
    """Validate the staged rows of `table`; only if they passed, `write` them as its new version.

    `alongside` runs after this validation and before its verdict: checks that must pass with
    these rows (a training set's logged-value consistency). It returns the check of its own
    verdict, which raises after this table's verdict did not. Any failure publishes nothing.
    """
    report = audit(run, table, staged, expectations, engine=engine)
    verdict = alongside() if alongside is not None else None
    require(run, report)
    if verdict is not None:
        verdict()
    with run.step(f"{label}: publish {table}"):
        return publish(run, report, write)


def discard_staged(run: Run) -> None:
    """After a successful publish the staged copy and intermediates are no longer needed."""
    for folder in ("staged", "work"):
        shutil.rmtree(run.dir / folder, ignore_errors=True)
