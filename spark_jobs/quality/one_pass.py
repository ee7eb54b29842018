"""Great Expectations' Spark execution engine, resolving a whole suite's counts in one query.

GE 1.24.1 resolves a suite's metrics level by level and sends a query for most of them: one per
distinct filter ("domain") for its bundled aggregates, one per column-pair or uniqueness count,
one per filtered row count, and one sample of unexpected values per expectation even when there
are none (34 queries for a 20-expectation training suite). :class:`OnePassSparkEngine` keeps
GE's metrics, expectations and results, and changes only when and how the counts are queried:

1. Deferral. When GE's validation graph hands it a level of metrics, the ones that need no query
   (schemas, conditions, partial aggregates) are resolved first and the rest wait for a later
   level, so every count of the suite is ready at the same time.
2. One aggregate. Every count of the form "rows of a domain where a condition holds" is folded
   into one ``df.agg(...)`` over the validated DataFrame: the domain's filters (the row
   condition, the null filter, ``ignore_row_if``) become part of the aggregate instead of a
   filtered DataFrame of their own, e.g. ``sum(when(D, when(c, 1).otherwise(0)))`` for GE's
   ``sum(when(c, 1).otherwise(0))`` over ``df.filter(D)``, null on an empty domain as before.
   The filters are read from GE's own ``get_domain_records``, run against a recorder.
3. Uniqueness (a window count in GE) is checked in the same aggregate as ``count = count
   distinct`` over the domain: equal means no duplicate, so no unexpected row; otherwise GE's own
   window query computes the exact count.
4. Samples of unexpected values are queried only when the count says there are some: with none,
   GE's ``filter(condition).limit(n)`` would return ``[]``, which is what is returned.

Whatever does not fit (another aggregate over a filtered domain, a metric of another shape, an
engine error in the one query) goes through GE's own code path, with GE's fallbacks and error
reporting, so results are the same values as GE's: same pass/fail, same observed values.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import reduce
from typing import Any

from great_expectations.core.metric_function_types import MetricPartialFunctionTypes
from great_expectations.execution_engine import SparkDFExecutionEngine
from great_expectations.execution_engine.sparkdf_batch_data import SparkDFBatchData
from great_expectations.expectations.metrics.map_metric_provider import (
    column_map_condition_auxilliary_methods as column_aux,
)
from great_expectations.expectations.metrics.map_metric_provider import (
    column_pair_map_condition_auxilliary_methods as pair_aux,
)
from great_expectations.expectations.metrics.map_metric_provider import (
    map_condition_auxilliary_methods as map_aux,
)
from great_expectations.expectations.metrics.map_metric_provider import (
    multicolumn_map_condition_auxilliary_methods as multi_aux,
)
from great_expectations.expectations.metrics.util import get_dbms_compatible_metric_domain_kwargs
from great_expectations.expectations.registry import get_metric_provider
from great_expectations.util import convert_to_json_serializable
from great_expectations.validator.computed_metric import MetricValue
from great_expectations.validator.metric_configuration import MetricConfiguration, MetricConfigurationID
from great_expectations.validator.validation_graph import ValidationGraph
from pyspark.sql import Column
from pyspark.sql import functions as F

__all__ = ["OnePassSparkEngine"]

# GE's providers this engine recognises (by identity: any other provider goes GE's own way).
_COUNT_AGGREGATE = map_aux._spark_map_condition_unexpected_count_aggregate_fn
_COUNT_VALUE = map_aux._spark_map_condition_unexpected_count_value
_FILTERED_ROW_COUNTS = (
    pair_aux._spark_column_pair_map_condition_filtered_row_count,
    multi_aux._spark_multicolumn_map_condition_filtered_row_count,
)
_UNEXPECTED_VALUES = (
    column_aux._spark_column_map_condition_values,
    pair_aux._spark_column_pair_map_condition_values,
    multi_aux._spark_multicolumn_map_condition_values,
)
# Uniqueness, whose conditions GE writes as windows, `count(1) over (partition by key) <= 1` (the
# compound one registered as a plain map condition).
_UNIQUE = {"column_values.unique": "column", "compound_columns.unique": "column_list"}
_COUNT_SUFFIX = ".unexpected_count"
_VALUES_SUFFIX = ".unexpected_values"


@dataclass
class _Query:
    """Aggregates of the one query, and how to turn their values into one metric's value."""

    columns: list[Column]
    finish: Callable[[list[Any]], MetricValue]


class _NotFoldable(Exception):
    """A domain whose records are not `df.filter(...)` of the validated DataFrame."""


class _FilterRecorder:
    """Stands in for the validated DataFrame while GE builds a domain: records its filters."""

    def __init__(self, schema: Any, columns: list[str]):
        self.schema, self.columns = schema, columns
        self.filters: list[Column] = []

    def filter(self, condition: Column | str) -> _FilterRecorder:
        self.filters.append(F.expr(condition) if isinstance(condition, str) else condition)
        return self


class OnePassSparkEngine(SparkDFExecutionEngine):
    """GE's Spark engine with the suite's counts in one aggregate (see the module docstring)."""

    queries = 0  # queries this engine sent itself (GE's own paths are not counted here)

    def resolve_metrics(
        self,
        metrics_to_resolve: Iterable[MetricConfiguration],
        metrics: dict[MetricConfigurationID, MetricValue] | None = None,
        runtime_configuration: dict | None = None,
    ) -> dict[MetricConfigurationID, MetricValue]:
        todo = list(metrics_to_resolve)
        if not todo:
            return metrics or {}
        metrics = metrics or {}
        kinds: dict[str, list[MetricConfiguration]] = {"free": [], "count": [], "values": []}
        for m in todo:
            kinds[self._kind(m)].append(m)
        # Only the validation graph re-offers what a call leaves out; other callers get everything.
        from_graph = sys._getframe(1).f_code is ValidationGraph._resolve.__code__
        if not from_graph:
            return {**self._resolve_free(kinds["free"], metrics, runtime_configuration),
                    **self._resolve_counts(kinds["count"], metrics, runtime_configuration),
                    **self._resolve_values(kinds["values"], metrics, runtime_configuration)}
        if kinds["free"]:
            return self._resolve_free(kinds["free"], metrics, runtime_configuration)
        if kinds["count"]:
            return self._resolve_counts(kinds["count"], metrics, runtime_configuration)
        return self._resolve_values(kinds["values"], metrics, runtime_configuration)

    # -- the three kinds -----------------------------------------------------------------------
    def _kind(self, metric: MetricConfiguration) -> str:
        try:
            _, fn = get_metric_provider(metric_name=metric.metric_name, execution_engine=self)
        except Exception:
            return "free"  # GE's own path reports it
        if fn is None or fn is _COUNT_VALUE or fn in _FILTERED_ROW_COUNTS:
            return "count"  # a bundled aggregate, or a count GE runs as a query of its own
        if fn in _UNEXPECTED_VALUES:
            return "values"
        return "free"

    def _resolve_free(self, todo: list[MetricConfiguration], metrics: dict, rc: dict | None) -> dict:
        if not todo:
            return {}
        direct, bundled = self._build_direct_and_bundled_metric_computation_configurations(todo, metrics, rc)
        direct = [replace(c, metric_fn=self._folded_count_aggregate) if c.metric_fn is _COUNT_AGGREGATE else c
                  for c in direct]
        return self._process_direct_and_bundled_metric_computation_configurations(direct, bundled)

    def _resolve_counts(self, todo: list[MetricConfiguration], metrics: dict, rc: dict | None) -> dict:
        if not todo:
            return {}
        direct, bundled = self._build_direct_and_bundled_metric_computation_configurations(todo, metrics, rc)
        queries: dict[MetricConfigurationID, _Query] = {}
        rest_direct, rest_bundled = [], []
        for c in bundled:
            if self._is_whole_table(c.compute_domain_kwargs or {}):
                queries[c.metric_configuration.id] = _Query([c.metric_fn], lambda v: convert_to_json_serializable(v[0]))
            else:
                rest_bundled.append(c)
        for c in direct:
            try:
                query = self._count_query(c)
            except Exception:
                query = None  # GE's own path runs it, and reports what is wrong with it
            if query is None:
                rest_direct.append(c)
            else:
                queries[c.metric_configuration.id] = query
        resolved: dict[MetricConfigurationID, MetricValue] = {}
        if queries:
            columns = [col for q in queries.values() for col in q.columns]
            try:
                self.queries += 1
                row = list(self._batch().dataframe.agg(*columns).collect()[0])
            except Exception:
                # GE's own path: per-domain bundles, per-metric fallbacks and error reports.
                return self._process_direct_and_bundled_metric_computation_configurations(direct, bundled)
            at = 0
            for metric_id, q in queries.items():
                values, at = row[at:at + len(q.columns)], at + len(q.columns)
                resolved[metric_id] = q.finish(values)
            if self._caching:
                self._metric_cache.update(resolved)
        resolved.update(self._process_direct_and_bundled_metric_computation_configurations(rest_direct, rest_bundled))
        return resolved

    def _resolve_values(self, todo: list[MetricConfiguration], metrics: dict, rc: dict | None) -> dict:
        """Unexpected-value samples: `[]` without a query when the count of unexpected rows is 0."""
        resolved: dict[MetricConfigurationID, MetricValue] = {}
        rest = []
        for m in todo:
            count_id = MetricConfiguration(
                metric_name=m.metric_name[: -len(_VALUES_SUFFIX)] + _COUNT_SUFFIX,
                metric_domain_kwargs=m.metric_domain_kwargs,
                metric_value_kwargs={k: v for k, v in (m.metric_value_kwargs or {}).items() if k != "result_format"},
            ).id
            if m.metric_name.endswith(_VALUES_SUFFIX) and metrics.get(count_id) == 0:
                resolved[m.id] = []
            else:
                rest.append(m)
        if rest:
            direct, bundled = self._build_direct_and_bundled_metric_computation_configurations(rest, metrics, rc)
            resolved.update(self._process_direct_and_bundled_metric_computation_configurations(direct, bundled))
        elif resolved and self._caching:
            self._metric_cache.update(resolved)
        return resolved

    # -- folding domains into aggregates -------------------------------------------------------
    def _folded_count_aggregate(self, cls: Any, execution_engine: Any, metric_domain_kwargs: dict,
                                metric_value_kwargs: dict, metrics: dict, **kwargs: Any) -> tuple[Any, dict, dict]:
        """GE's `sum(when(c, 1).otherwise(0))` over `df.filter(D)`, as an aggregate over `df`."""
        condition, compute, accessor = metrics["unexpected_condition"]
        try:
            domain = self._domain_filter(compute)
        except _NotFoldable:
            return _COUNT_AGGREGATE(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics, **kwargs)
        hit = F.when(condition, 1).otherwise(0)
        return F.sum(hit if domain is None else F.when(domain, hit)), {}, accessor

    def _count_query(self, c: Any) -> _Query | None:
        """The aggregates answering a count GE runs as a query of its own, or None to let GE run it."""
        metric = c.metric_configuration
        kwargs = c.metric_provider_kwargs
        condition, compute, accessor = kwargs["metrics"]["unexpected_condition"]
        accessor = get_dbms_compatible_metric_domain_kwargs(
            metric_domain_kwargs=accessor, batch_columns_list=kwargs["metrics"]["table.columns"]
        ) if c.metric_fn in _FILTERED_ROW_COUNTS else accessor
        try:
            domain = self._domain_filter(dict(**compute, **accessor))
        except _NotFoldable:
            return None
        rows = F.lit(1) if domain is None else F.when(domain, 1)
        if c.metric_fn in _FILTERED_ROW_COUNTS:  # df.filter(D).count()
            return _Query([F.count(rows)], lambda v: int(v[0]))
        base = metric.metric_name[: -len(_COUNT_SUFFIX)]
        condition_name = metric.metric_dependencies["unexpected_condition"].metric_name
        _, condition_fn = get_metric_provider(metric_name=condition_name, execution_engine=self)
        window = getattr(condition_fn, "metric_fn_type", None) == MetricPartialFunctionTypes.WINDOW_CONDITION_FN
        if not window and base not in _UNIQUE:  # df.filter(D).filter(c).count()
            hit = condition if domain is None else domain & condition
            return _Query([F.count(F.when(hit, 1))], lambda v: int(v[0]))
        key = _UNIQUE.get(base)
        columns = accessor.get(key) if key else None
        if not columns:
            return None
        names = [columns] if isinstance(columns, str) else list(columns)
        # Distinct 64-bit hashes of the key over the domain: as many as rows means no two rows share
        # a key (a hash collision can only hide a distinct key, never invent one); fewer, and GE's
        # window query counts the unexpected rows exactly. (A distinct count of the key itself as a
        # struct ran Sail out of memory on 40k rows.)
        hashed = F.xxhash64(*[F.col(n) for n in names])
        distinct = F.count_distinct(hashed if domain is None else F.when(domain, hashed))

        def finish(values: list[Any]) -> MetricValue:
            if int(values[0]) == int(values[1]):
                return 0
            self.queries += 1
            return c.metric_fn(**kwargs)  # duplicates: GE's window query counts the rows exactly

        return _Query([F.count(rows), distinct], finish)

    def _batch(self) -> SparkDFBatchData:
        data = self.batch_manager.active_batch_data
        if not isinstance(data, SparkDFBatchData):
            raise _NotFoldable()
        return data

    def _is_whole_table(self, domain_kwargs: dict) -> bool:
        try:
            return self._domain_filter(domain_kwargs) is None
        except _NotFoldable:
            return False

    def _domain_filter(self, domain_kwargs: dict) -> Column | None:
        """The condition D with `get_domain_records(domain_kwargs) == df.filter(D)` (None: no filter).

        GE's own `get_domain_records` builds the domain, on a recorder standing in for `df`;
        anything but filters on the active batch raises `_NotFoldable`.
        """
        batch_id = domain_kwargs.get("batch_id")
        if batch_id is not None and batch_id != self.batch_manager.active_batch_data_id:
            raise _NotFoldable()
        data = self._batch()
        real = data.dataframe
        if getattr(self, "_schema_of", None) is not real:
            self._schema_of, self._schema, self._columns = real, real.schema, real.columns
        recorder = _FilterRecorder(self._schema, self._columns)
        data._dataframe = recorder
        try:
            out = self.get_domain_records(domain_kwargs=domain_kwargs)
        except Exception as e:
            raise _NotFoldable() from e
        finally:
            data._dataframe = real
        if out is not recorder:
            raise _NotFoldable()
        return reduce(lambda a, b: a & b, recorder.filters) if recorder.filters else None
