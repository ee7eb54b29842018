"""`tilewise validate TABLE`: the built-in suite of a table's kind (plus a training set's own
`validation`), run with Great Expectations on the table's current version; HTML report in the
run folder. Exit 1 when an expectation fails."""

from __future__ import annotations

from spark_jobs.defs.models import Definitions
from spark_jobs.engine.session import Engine
from spark_jobs.errors import InputDataError, ValidationFailed
from spark_jobs.names import builder, check_table_name
from spark_jobs.quality import gate
from spark_jobs.quality.suites import table_suite
from spark_jobs.storage.manifest import Run
from spark_jobs.storage.tables import Warehouse


def run(engine: Engine, wh: Warehouse, defs: Definitions, run: Run, table: str) -> None:
    check_table_name(defs, table)
    version = wh.version(table)
    if version is None:
        raise InputDataError(f"table {table} does not exist under {wh.root} (run the job that builds it first: {builder(table)})")
    df = wh.read(table, version=version)
    expectations = table_suite(defs, table, df.columns)
    run.inputs[table] = {"version": version}
    report = gate.audit(run, table, df, expectations, engine=engine.name)
    where = report.page_path or report.report_path
    run.say(f"{table} v{version}: {'passed' if report.success else 'FAILED'}; report: {where}")
    if not report.success:
        raise ValidationFailed(f"{table} v{version} failed validation:\n  " + "\n  ".join(report.summary_lines()))
