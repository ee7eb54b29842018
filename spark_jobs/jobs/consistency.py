"""The consistency step of a training set with a `logged:` block: `consistency/{training_set}`.

Runs on the staged training table (the rows about to be published): the metrics per date and
logged value (`transforms.consistency`), the stale/logic split of numeric mismatches (the
point-in-time lookup again, with each mismatching row's cutoff 1..6 finest blocks earlier), the
built-in suite and the `validation.min_match_rate` gate, the PNG and HTML report beside the
Great Expectations report, and the summary lines and manifest entry of the run. The training set
publishes the table after its training table, and only when both passed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs.defs.lineage import Lineage
from spark_jobs.defs.models import Definitions, FeatureRef, TrainingSet
from spark_jobs.engine.session import Engine
from spark_jobs.names import consistency_table, cutoff_column
from spark_jobs.quality import gate
from spark_jobs.quality.consistency_report import write_report
from spark_jobs.quality.gx import ValidationReport
from spark_jobs.quality.suites import consistency_suite
from spark_jobs.storage.manifest import Run, consistency_line
from spark_jobs.storage.tables import stage, stage_rows
from spark_jobs.transforms import consistency as tc
from spark_jobs.transforms.pit import fill_empty
from spark_jobs.transforms.sweep import point_in_time

MAX_DIFFS = 5_000  # differences per logged value drawn in the report


def lineage(training: Lineage, ts_def: TrainingSet) -> Lineage:
    """The training table's lineage and the tolerance the values were compared with."""
    assert ts_def.logged is not None
    return {"training": training, "tolerance": ts_def.logged.tolerance}


@dataclass
class Checked:
    """The staged consistency table, its validation and the gate's verdict."""

    table: str
    staged: DataFrame
    rows: list[dict[str, Any]]
    report: ValidationReport
    below_gate: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.report.success and not self.below_gate


def measure(
    engine: Engine,
    defs: Definitions,
    run: Run,
    ts_def: TrainingSet,
    training: DataFrame,
    *,
    id_column: str,
    ts_column: str,
    blocks: dict[str, DataFrame],
) -> Checked:
    """Compare the logged values of the staged `training` rows with the backfilled ones.

    `blocks`: feature set -> its block table as read for the training set (same version).
    """
    assert ts_def.logged is not None
    logged = ts_def.logged
    table = consistency_table(ts_def.name)
    comps = tc.comparisons(training.schema, logged.values, {n: ts_def.logged_column(n) for n in logged.values})
    with run.step(f"{table}: compare {len(comps)} logged values"):
        collected = tc.metrics(training, comps, logged.tolerance).collect()
    differ = {c.logged for c in comps if c.numeric and any(r["logged"] == c.logged and r["compared"] > r["matched"] for r in collected)}
    split: list[Any] = []
    refs = {ref.column: ref for ref in ts_def.features}
    for fs_name in ts_def.feature_sets:
        mine = [c for c in comps if c.logged in differ and refs[c.feature].feature_set == fs_name]
        if mine:
            with run.step(f"{table}: stale or logic ({', '.join(c.logged for c in mine)}), cutoffs 1..{tc.LAGS[-1]} blocks earlier"):
                split += _stale(engine, defs, run, ts_def, training, fs_name, mine, [refs[c.feature] for c in mine],
                                blocks[fs_name], id_column=id_column, ts_column=ts_column)
    rows = tc.finish_rows(collected, comps, tc.stale_split(split))
    diffs = {
        c.logged: [float(r[0]) for r in training.filter(tc.mismatch_sql(c, logged.tolerance))
                   .select(F.expr(tc.diff_sql(c))).limit(MAX_DIFFS).collect()]
        for c in comps if c.logged in differ
    }
    spark = training.sparkSession
    staged = stage_rows(spark, run.dir / "staged" / table, rows, tc.SCHEMA)
    # The chart is drawn while Great Expectations validates (mostly waiting on the engine).
    folder = run.dir / "report" / "consistency"
    drawing = ThreadPoolExecutor(1, thread_name_prefix="tilewise-consistency-report")
    drawn = drawing.submit(write_report, rows, diffs, folder, f"{table}: logged vs backfilled")
    try:
        report = gate.audit(run, table, staged, consistency_suite(), engine=engine.name)
        png, page = drawn.result()
    finally:
        drawing.shutdown(wait=True)
    below = [
        f"{r['logged']} on {r[tc.DATE]}: match rate {r['match_rate']:.4f} is below validation.min_match_rate {floor}"
        for r in rows
        for name, floor in ts_def.validation.min_match_rate.items()
        if r["logged"] == name and r["match_rate"] is not None and r["match_rate"] < floor
    ]
    entry = run.validation[table]
    if below:
        entry["success"] = False
        entry["failed"] = [*entry["failed"], *below]
    entry["consistency_report"], entry["consistency_chart"] = str(page), str(png)
    totals = run.consistency[table] = tc.totals(rows)
    for name, c in totals.items():
        run.say(f"  {table}: {consistency_line(name, c)}")
    run.say(f"  {table}: chart {png}")
    return Checked(table, staged, rows, report, below)


def _stale(  # type: ignore[no-untyped-def]
    engine: Engine, defs: Definitions, run: Run, ts_def: TrainingSet, training: DataFrame, fs_name: str,
    comps: list[tc.Comparison], refs: list[FeatureRef], blocks: DataFrame, *, id_column: str, ts_column: str,
) -> list[Any]:
    fs = defs.feature_sets[fs_name]
    ts_alias, wm_alias = "_tw_ts", "_tw_wm"
    requests = tc.stale_requests(
        training, comps, ts_def.logged.tolerance,  # type: ignore[union-attr]
        id_column=id_column, ts=ts_column, keys={k: ts_def.impression_column(k) for k in fs.key},
        cutoff=cutoff_column(fs_name), finest_s=fs.finest.seconds, ts_alias=ts_alias, watermark_alias=wm_alias,
    )
    requests = stage(training.sparkSession, run.dir / "work" / "stale" / fs_name, requests)
    values = point_in_time(
        engine, requests.select(tc.RID, ts_alias, wm_alias, *fs.key), blocks, fs, refs,
        id_column=tc.RID, ts=ts_alias, watermark=wm_alias,
    )
    values = fill_empty(values, fs, refs).drop(cutoff_column(fs_name))
    return tc.stale_lags(requests, values, comps, ts_def.logged.tolerance).collect()  # type: ignore[union-attr]


def require(run: Run, checked: Checked) -> None:
    """Raise (nothing published) unless the table passed its suite and the match-rate gate."""
    gate.require(run, checked.report, checked.below_gate)
