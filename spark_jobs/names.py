"""The names tilewise gives to its tables and its reserved columns, spelled once.

Every output table is `{kind}/{name}`: `blocks/{feature_set}`, `timelines/{feature_set}`,
`snapshots/{feature_set}`, `training/{training_set}` and `consistency/{training_set}` (training
sets with logged values).
The reserved columns are those the input files must carry (`impression_id`, the optional
`feature_watermark`) and those tilewise writes (`{feature_set}_cutoff`, `impression_date`, the
block columns). Jobs, suites and definitions import them from here, never from one another. No
Spark import: the definitions' checks use these names too.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from spark_jobs.errors import InputDataError

if TYPE_CHECKING:
    from spark_jobs.defs.models import Definitions

# -- reserved columns ----------------------------------------------------------------------------
IMPRESSION_ID = "impression_id"  # impressions and label events: the id labels are joined on
WATERMARK = "feature_watermark"  # impressions, optional: how far the features served were complete
IMPRESSION_DATE = "impression_date"  # training and consistency tables: the partition column
EVENT_COUNT = "event_count"  # block tables: the events a block was built from
BLOCK_SIZE = "block_size"  # block tables: the block's length in seconds
BLOCK_START = "block_start"  # block tables: the block's first instant
BLOCK_DATE = "block_date"  # block tables: the date of block_start, the partition column
BLOCK_PARTITIONS = (BLOCK_SIZE, BLOCK_DATE)
TIMELINE_DAY = "day"  # timeline tables: the day a row's finest blocks start in, the partition column


def cutoff_column(feature_set: str) -> str:
    """The training-table column holding where a feature set's windows ended for each row."""
    return f"{feature_set}_cutoff"


# -- tables --------------------------------------------------------------------------------------
BLOCKS, TIMELINES, SNAPSHOTS, TRAINING, CONSISTENCY = "blocks", "timelines", "snapshots", "training", "consistency"


def blocks_table(feature_set: str) -> str:
    return f"{BLOCKS}/{feature_set}"


def timeline_table(feature_set: str) -> str:
    return f"{TIMELINES}/{feature_set}"


def snapshot_table(feature_set: str) -> str:
    return f"{SNAPSHOTS}/{feature_set}"


def training_table(training_set: str) -> str:
    return f"{TRAINING}/{training_set}"


def consistency_table(training_set: str) -> str:
    return f"{CONSISTENCY}/{training_set}"


def table_kind(table: str) -> tuple[str, str]:
    """(kind, name) of a table name such as `training/engagement`."""
    kind, _, name = table.partition("/")
    return kind, name


def output_tables(defs: Definitions) -> list[str]:
    """Every table these definitions can write."""
    return [
        *(blocks_table(fs) for fs in sorted(defs.feature_sets)),
        *(timeline_table(fs) for fs in sorted(defs.feature_sets)),
        *(snapshot_table(fs) for fs in sorted(defs.feature_sets)),
        *(training_table(ts) for ts in sorted(defs.training_sets)),
        *(consistency_table(name) for name, ts in sorted(defs.training_sets.items()) if ts.logged is not None),
    ]


def check_table_name(defs: Definitions, table: str) -> None:
    """`table` names an output table of these definitions (so it cannot point anywhere else)."""
    tables = output_tables(defs)
    if table not in tables:
        close = near_tables(table, tables)
        if close:
            raise InputDataError(f"{table!r} is not a table of these definitions: did you mean {' or '.join(close)}?")
        raise InputDataError(
            f"{table!r} is not a table of these definitions: write {BLOCKS}/<feature_set>, "
            f"{TIMELINES}/<feature_set>, {SNAPSHOTS}/<feature_set>, {TRAINING}/<training_set> or "
            f"{CONSISTENCY}/<training set with logged values> (these definitions have {', '.join(tables)})"
        )


def near_tables(table: str, tables: list[str]) -> list[str]:
    """The tables `table` probably meant: the one a path ends with, else those of its kind (any
    kind for a bare name) whose name is within a typo or two of its name."""
    text = table.strip().rstrip("/")
    ends = [t for t in tables if text.endswith("/" + t)]
    if ends:
        return ends[:1]
    kind, _, name = text.rpartition("/")
    pool = {t: t.partition("/")[2] for t in tables if not kind or t.partition("/")[0] == kind}
    names = difflib.get_close_matches(name, sorted(set(pool.values())), n=1, cutoff=0.8)
    return [t for t, n in pool.items() if n in names][:2]


def builder(table: str) -> str:
    """The command that builds `table`, for messages."""
    kind, name = table_kind(table)
    if kind in (BLOCKS, TIMELINES):
        return f"tilewise backfill --start DATE --end DATE --feature-set {name}"
    if kind == SNAPSHOTS:
        return f"tilewise snapshot --as-of TIMESTAMP --feature-set {name}"
    return f"tilewise training-set {name} --start DATE --end DATE"
