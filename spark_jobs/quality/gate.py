"""Write-audit-publish: staged output is validated before it becomes a table's new version.

On failure nothing is published (the table keeps its version), and the staged rows and the
Great Expectations report stay in the run's folder (`_runs/<run_id>/`).
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
    """Validate `df` (staged output of `table`) and record the outcome in the run."""
    with run.step(f"validate {table} ({len(expectations)} expectations)"):
        report = validate_dataframe(
            df, expectations, suite_name=table.replace("/", "."), report_dir=run.dir / "report"
        )
    run.validation[table] = {
        "success": report.success,
        "expectations": len(report.results),
        "failed": [f"{r.describe()}: {r.observed}" for r in report.failed],
        "seconds": round(report.seconds, 3),
        "report": str(report.page_path or report.report_path) if (report.page_path or report.report_path) else None,
        "engine": engine,
    }
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


def discard_staged(run: Run) -> None:
    """After a successful publish the staged copy and intermediates are no longer needed."""
    for folder in ("staged", "work"):
        shutil.rmtree(run.dir / folder, ignore_errors=True)
