"""`tilewise snapshot --as-of TS`: every key's feature values as of TS (the online store's view).

Each key is looked up as an impression at TS without a watermark: windows end at floor_g(TS),
recorded per row as `watermark`. Every feature and window of the feature set is included. As every
key's windows share that end, the covers are the same for all keys: the job reads only their
blocks and combines them in one group-by (`transforms.pit.assemble_at`), with the same
aggregation SQL as a training set's lookup.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pyspark.sql import Column
from pyspark.sql import functions as F

from spark_jobs.defs.models import Definitions, FeatureRef, FeatureSet
from spark_jobs.engine.session import Engine
from spark_jobs.errors import InputDataError
from spark_jobs.names import blocks_table, snapshot_table
from spark_jobs.quality import gate
from spark_jobs.quality.suites import snapshot_suite
from spark_jobs.storage import coverage
from spark_jobs.storage.manifest import Run
from spark_jobs.storage.tables import Warehouse, stage
from spark_jobs.transforms.blocks import quote
from spark_jobs.transforms.pit import assemble_at, fill_empty, piece_conditions


def all_refs(fs: FeatureSet) -> list[FeatureRef]:
    return [FeatureRef(feature_set=fs.name, feature=f.name, window=w) for f in fs.features for w in f.windows]


def cover_filter(end: int, windows: set[int], fs: FeatureSet) -> Column:
    """Block rows of the minimal covers of [end - w, end) for every window w (epoch seconds): per
    piece of a cover its block size, dates and starts, so the scan reads only those partitions."""
    sizes = tuple(d.seconds for d in fs.block_sizes)
    pieces = sorted({c for w in windows for c in piece_conditions(end, w, sizes)})
    return F.expr(" OR ".join(pieces) or "false")


def run(engine: Engine, wh: Warehouse, defs: Definitions, run: Run, as_of: datetime, names: list[str]) -> None:
    for name in names:
        fs = defs.feature_sets[name]
        source = blocks_table(name)
        version = wh.version(source)
        if version is None:
            raise InputDataError(f"snapshot of {name} needs {source}: run `tilewise backfill` first")
        run.inputs[source] = {"version": version}
        refs = all_refs(fs)
        g = fs.finest.seconds
        with run.step(f"{name}: snapshot as of {as_of:%Y-%m-%d %H:%M:%S} from {source} v{version}"):
            blocks = wh.read(source, version=version)
            t = int(as_of.replace(tzinfo=timezone.utc).timestamp())
            t_floor = t - t % g
            note = coverage.note(wh.path(source), source, name, t_floor - max(r.window.seconds for r in refs), t_floor,
                                 "the snapshot's windows")
            if note:
                run.notes.append(note)
            # Every key: each block is rolled up into a block of the coarsest size, so that level
            # (a partition of the table) holds every key, in far fewer rows than the finest.
            coarsest = blocks.filter(F.col("block_size") == fs.block_sizes[-1].seconds)
            keys = coarsest.select(*[quote(k) for k in fs.key]).distinct()
            # Every key's windows end at the same instant, so the blocks their covers use are
            # known here: only those (size, date) partitions are read, whatever the history,
            # and one group-by combines them.
            in_reach = blocks.filter(cover_filter(t_floor, {r.window.seconds for r in refs}, fs))
            values = keys.join(assemble_at(t_floor, in_reach, fs, refs), on=list(fs.key), how="left")
            out = fill_empty(values, fs, refs).select(
                *[quote(k) for k in fs.key],
                *[quote(r.column) for r in refs],
                F.expr(f"timestamp_seconds({t_floor})").alias("watermark"),
                F.lit(as_of).cast("timestamp").alias("as_of"),
            )
            table = snapshot_table(name)
            staged = stage(engine.spark, run.dir / "staged" / table, out)
            rows = staged.count()
        result = gate.validate_and_publish(
            run, table, staged, snapshot_suite(list(fs.key)), lambda: wh.overwrite(table, staged, []),
            engine=engine.name, label=name,
        )
        gate.discard_staged(run)
        run.outputs[table] = {"version": result.version, "rows": rows}
