"""`tilewise validate TABLE`: the built-in suite of a table's kind (plus a training set's own
`validation`), run with Great Expectations on the table's current version; HTML report in the
run folder. Exit 1 when an expectation fails."""

from __future__ import annotations

from collections.abc import Collection

from spark_jobs.aggregations import REGISTRY
from spark_jobs.defs.models import Definitions
from spark_jobs.engine.session import Engine
from spark_jobs.errors import InputDataError, ValidationFailed
from spark_jobs.quality import gate
from spark_jobs.quality.suites import block_suite, consistency_suite, snapshot_suite, timeline_suite, training_suite, user_suite
from spark_jobs.storage.manifest import Run
from spark_jobs.storage.tables import Warehouse
from spark_jobs.transforms.blocks import EVENT_COUNT
from spark_jobs.transforms.pit import cutoff_column

WATERMARK = "feature_watermark"


def training_expectations(defs: Definitions, name: str, columns: list[str]) -> list[dict]:
    """Built-in checks of `training/{name}` plus the definition's own `validation` block."""
    ts_def = defs.training_sets[name]
    ts_col = defs.sources[ts_def.impressions].timestamp
    counts = [
        r.column
        for r in ts_def.features
        if REGISTRY[defs.feature_sets[r.feature_set].feature(r.feature).aggregation].non_negative
    ]
    pairs = []
    for fs_name in ts_def.feature_sets:
        pairs.append((cutoff_column(fs_name), ts_col))
        if WATERMARK in columns:
            pairs.append((cutoff_column(fs_name), WATERMARK))
    labels = [lb.name for lb in ts_def.labels]
    return training_suite(label_columns=labels, count_columns=counts, cutoff_pairs=pairs) + user_suite(ts_def.validation)


def check_table_name(defs: Definitions, table: str) -> None:
    """`table` names an output table of these definitions (so it cannot point anywhere else)."""
    kind, _, name = table.partition("/")
    known: Collection[str] = {}
    if kind == "training":
        known = defs.training_sets
    elif kind in ("blocks", "timelines", "snapshots"):
        known = defs.feature_sets
    elif kind == "consistency":
        known = {n for n, t in defs.training_sets.items() if t.logged is not None}
    if name not in known:
        raise InputDataError(
            f"{table!r} is not a table of these definitions: write blocks/<feature_set>, timelines/<feature_set>, "
            "snapshots/<feature_set>, training/<training_set> or consistency/<training set with logged values>"
        )


def expectations_for(defs: Definitions, table: str, columns: list[str]) -> list[dict]:
    """The suite of `table`, a name `check_table_name` accepted."""
    kind, _, name = table.partition("/")
    if kind == "blocks":
        return block_suite(list(defs.feature_sets[name].key), [EVENT_COUNT])
    if kind == "timelines":
        return timeline_suite(list(defs.feature_sets[name].key), "day")
    if kind == "snapshots":
        return snapshot_suite(list(defs.feature_sets[name].key))
    if kind == "consistency":
        return consistency_suite()
    return training_expectations(defs, name, columns)


def run(engine: Engine, wh: Warehouse, defs: Definitions, run: Run, table: str) -> None:
    check_table_name(defs, table)
    version = wh.version(table)
    if version is None:
        raise InputDataError(f"table {table} does not exist under {wh.root}")
    df = wh.read(table, version=version)
    expectations = expectations_for(defs, table, df.columns)
    run.inputs[table] = {"version": version}
    report = gate.audit(run, table, df, expectations, engine=engine.name)
    where = report.page_path or report.report_path
    run.say(f"{table} v{version}: {'passed' if report.success else 'FAILED'}; report: {where}")
    if not report.success:
        raise ValidationFailed(f"{table} v{version} failed validation:\n  " + "\n  ".join(report.summary_lines()))
