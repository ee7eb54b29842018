"""Built-in expectation lists for tilewise's tables, and the user's ``validation`` block.

Pure functions: they return ``{"type": ..., "kwargs": {...}}`` dicts for
:func:`spark_jobs.quality.gx.validate_dataframe` and touch no Spark. The built-in checks
always run besides what a definition asks for (README, "Data quality gate"): one row per key,
labels in {0, 1}, counts never negative, and the leakage guard on every feature set's cutoff.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from spark_jobs.aggregations import REGISTRY
from spark_jobs.errors import DefinitionError
from spark_jobs.names import (
    BLOCK_SIZE, BLOCK_START, BLOCKS, CONSISTENCY, EVENT_COUNT, IMPRESSION_DATE, IMPRESSION_ID, SNAPSHOTS, TIMELINE_DAY,
    TIMELINES, WATERMARK, cutoff_column, table_kind,
)

if TYPE_CHECKING:
    from spark_jobs.defs.models import Definitions

__all__ = [
    "block_suite", "consistency_suite", "training_suite", "snapshot_suite", "user_suite", "training_expectations",
    "table_suite", "timeline_suite",
]

Spec = dict[str, Any]


def _spec(type_: str, **kwargs: Any) -> Spec:
    return {"type": type_, "kwargs": kwargs}


def _not_null(column: str) -> Spec:
    return _spec("expect_column_values_to_not_be_null", column=column)


def _unique(columns: Sequence[str]) -> Spec:
    # A single column reads better in the report as "values must be unique".
    if len(columns) == 1:
        return _spec("expect_column_values_to_be_unique", column=columns[0])
    return _spec("expect_compound_columns_to_be_unique", column_list=list(columns))


def _non_negative(columns: Iterable[str]) -> list[Spec]:
    # Nulls are skipped by GE's column-map expectations: a null count is another check's job.
    return [_spec("expect_column_values_to_be_between", column=c, min_value=0) for c in columns]


def block_suite(key_columns: Sequence[str], count_columns: Sequence[str]) -> list[Spec]:
    """Checks for ``blocks/{feature_set}``: keys present, one row per block, counts >= 0."""
    keys = list(key_columns)
    if not keys:
        raise ValueError("block_suite needs at least one key column")
    primary = [*keys, BLOCK_SIZE, BLOCK_START]
    return [
        # Null keys are dropped before aggregation (README, "Point-in-time semantics"); a null here is a bug.
        *(_not_null(c) for c in primary),
        _unique(primary),
        *_non_negative(count_columns),
    ]


def timeline_suite(key_columns: Sequence[str], day_column: str) -> list[Spec]:
    """Checks for ``timelines/{feature_set}``: keys present, one row per key and day."""
    primary = [*key_columns, day_column]
    return [*(_not_null(c) for c in primary), _unique(primary)]


def training_suite(
    *,
    label_columns: Sequence[str],
    count_columns: Sequence[str],
    cutoff_pairs: Sequence[tuple[str, str]],
) -> list[Spec]:
    """Checks for ``training/{training_set}``.

    ``cutoff_pairs`` are ``(cutoff_column, bound_column)``: each feature set's
    ``{fs}_cutoff`` must not pass the impression timestamp nor its watermark, so the caller
    passes ``[(cutoff, ts), (cutoff, watermark), ...]``. Rows where either side is null are
    skipped (a null watermark means "no watermark"; a null cutoff has nothing to leak).
    """
    specs: list[Spec] = [
        _not_null(IMPRESSION_ID),
        _unique([IMPRESSION_ID]),
    ]
    for label in label_columns:
        # A label is 1 or 0 by construction, never null (README, "Point-in-time semantics").
        specs.append(_not_null(label))
        specs.append(_spec("expect_column_values_to_be_in_set", column=label, value_set=[0, 1]))
    specs.extend(_non_negative(count_columns))
    for cutoff, bound in cutoff_pairs:
        specs.append(
            _spec(
                "expect_column_pair_values_a_to_be_greater_than_b",
                column_A=bound,
                column_B=cutoff,
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            )
        )
    return specs


def snapshot_suite(key_columns: Sequence[str]) -> list[Spec]:
    """Checks for ``snapshots/{feature_set}``: one row per key, keys present."""
    keys = list(key_columns)
    if not keys:
        raise ValueError("snapshot_suite needs at least one key column")
    return [*(_not_null(c) for c in keys), _unique(keys)]


def consistency_suite() -> list[Spec]:
    """Checks for ``consistency/{training_set}``: one row per date and logged value, counts
    never negative, ``rows`` the sum of the four null/compared counts, ``matched <= compared``
    and a match rate in [0, 1]."""
    counts = ["rows", "compared", "matched", "logged_null", "backfilled_null", "both_null", "stale_matched"]
    parts = "compared + logged_null + backfilled_null + both_null"
    return [
        _not_null(IMPRESSION_DATE),
        _not_null("logged"),
        _unique([IMPRESSION_DATE, "logged"]),
        *_non_negative(counts),
        # No row may have `rows` other than the sum of its parts: GE has no per-row sum check
        # against another column, so the rows that break it must be none.
        _spec(
            "expect_column_values_to_be_null",
            column="rows",
            row_condition=f"NOT (rows <=> {parts})",
            condition_parser="spark",
        ),
        _spec("expect_column_pair_values_a_to_be_greater_than_b", column_A="compared", column_B="matched", or_equal=True),
        _spec("expect_column_values_to_be_between", column="match_rate", min_value=0, max_value=1),
        # The stale share explains rows that differ, so it is at most their number.
        _spec(
            "expect_column_values_to_be_null",
            column="stale_matched",
            row_condition="stale_matched > compared - matched",
            condition_parser="spark",
        ),
    ]


def training_expectations(defs: Definitions, name: str, columns: Sequence[str]) -> list[Spec]:
    """Built-in checks of `training/{name}` (whose columns are `columns`) plus the definition's
    own `validation` block."""
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


def table_suite(defs: Definitions, table: str, columns: Sequence[str]) -> list[Spec]:
    """The suite of output table `table` (a name `names.check_table_name` accepts)."""
    kind, name = table_kind(table)
    if kind == BLOCKS:
        return block_suite(list(defs.feature_sets[name].key), [EVENT_COUNT])
    if kind == TIMELINES:
        return timeline_suite(list(defs.feature_sets[name].key), TIMELINE_DAY)
    if kind == SNAPSHOTS:
        return snapshot_suite(list(defs.feature_sets[name].key))
    if kind == CONSISTENCY:
        return consistency_suite()
    return training_expectations(defs, name, columns)


def user_suite(validation: Any) -> list[Spec]:
    """Expectations from a training set's ``validation`` block (or ``[]`` for None).

    ``validation`` is duck-typed: ``min_rows`` (int or None), ``max_null_fraction``
    ({column: fraction}) and ``expectations`` (items with ``.type`` and ``.kwargs``).
    """
    if validation is None:
        return []
    specs: list[Spec] = []
    min_rows = getattr(validation, "min_rows", None)
    if min_rows is not None:
        if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 0:
            raise DefinitionError(
                f"validation.min_rows must be a non-negative integer, got {min_rows!r}"
            )
        specs.append(_spec("expect_table_row_count_to_be_between", min_value=min_rows))
    for column, fraction in (getattr(validation, "max_null_fraction", None) or {}).items():
        is_number = isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
        if not is_number or not 0 <= fraction <= 1:
            raise DefinitionError(
                f"validation.max_null_fraction.{column} must be a number in [0, 1], "
                f"got {fraction!r}"
            )
        # Rounded so 1 - 0.7 shows as 0.3 in the report, not 0.30000000000000004.
        mostly = round(1.0 - float(fraction), 12)
        specs.append(_spec("expect_column_values_to_not_be_null", column=column, mostly=mostly))
    for expectation in getattr(validation, "expectations", None) or ():
        kwargs = getattr(expectation, "kwargs", None) or {}
        if not isinstance(kwargs, Mapping):
            name = getattr(expectation, "type", "?")
            raise DefinitionError(f"validation expectation {name}: kwargs must be a mapping")
        specs.append({"type": expectation.type, "kwargs": plain(kwargs)})
    return specs


def plain(value: Any) -> Any:
    """Deep copy into dicts and lists: definitions may be frozen (tuples, mapping proxies)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
