"""Validate a Spark DataFrame with Great Expectations and render Data Docs.

One entry point, :func:`validate_dataframe`, runs a list of expectation specs (the
``{"type": ..., "kwargs": {...}}`` dicts of a definition's ``validation.expectations`` and of
:mod:`spark_jobs.quality.suites`) against a DataFrame of either engine: a Spark Connect
DataFrame (Sail) or a classic one. Everything GE needs lives in an *ephemeral* context, so
nothing is written outside ``report_dir`` (no ``gx/`` folder in the working directory) and
no usage statistics leave the machine.

Cost: GE's own Spark engine sends a query per metric (34 for a 20-expectation training suite),
each re-running ``df``'s plan. Validations here run on :class:`~spark_jobs.quality.one_pass.
OnePassSparkEngine`, GE's engine with the suite's counts folded into one aggregate: two queries
for a passing suite (GE's row count, then everything else), plus one sample of values per
expectation that has unexpected rows. Results and Data Docs are GE's (tested against GE's own
engine, ``one_pass=False``). Pass a DataFrame that is cheap to re-scan all the same: one read
back from the table just written (file-backed), or one the caller has persisted on classic
Spark. This module never persists ``df`` itself, so it can't leave a cached copy of a big table
behind; on Sail ``persist()`` is a no-op anyway (0.7.2 logs "Persist operation is not yet
supported"). Data Docs reuse GE's compiled Jinja templates across validations
(``_share_compiled_templates``).

Data Docs note: the HTML pages load Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega
from public CDNs. Offline, the pages still hold every result as plain HTML (unstyled); the
pass/fail icons get a Unicode fallback here (see ``_add_offline_status_icons``), but the list of
validation runs on ``index.html`` is drawn by JavaScript, so the report also records the
validation page itself (:attr:`ValidationReport.page_path`).

Engine notes (GE 1.24.1, checked on Sail 0.7.2 and classic Spark 4.2.0):
- Sail has no ``DataFrame.approxQuantile``, so ``expect_column_median_to_be_between`` and
  ``expect_column_quantile_values_to_be_between`` come back failed with ``error: approx
  quantile`` there. On classic Spark the quantile one makes GE itself crash (it can't serialise
  a numpy bool), reported as a :class:`TilewiseError`.
- A few GE expectations run Python UDFs on classic Spark; its Python workers must use an
  interpreter with pyarrow (``PYSPARK_PYTHON``/``spark.pyspark.python``).
- An expectation that raises on the engine (e.g. a numeric bound on a string column) is a
  failed result whose ``observed`` text starts with ``error:``, not an exception.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence
from urllib.parse import unquote, urlparse

from spark_jobs.quality.suites import plain
from spark_jobs.errors import DefinitionError, TilewiseError

if TYPE_CHECKING:
    from great_expectations.data_context import EphemeralDataContext
    from great_expectations.expectations.expectation import Expectation
    from pyspark.sql import DataFrame

__all__ = ["ExpectationResult", "ValidationReport", "validate_dataframe"]

# Name of the one Data Docs site each validation context gets.
_SITE = "tilewise"
# GE keeps the "current project" in a process-wide singleton (get_context sets it, suites and
# checkpoints resolve stores through it), so two validations in parallel threads could mix up
# their contexts. Serialise them; the Spark work inside is what takes time anyway.
_LOCK = threading.Lock()
# Kwargs GE's expectation constructors accept but that belong to the suite's bookkeeping;
# a definition setting them would corrupt result matching (id) or the report.
_RESERVED_KWARGS = frozenset({"id", "rendered_content", "windows", "batch_id"})
# Kwargs naming columns of the validated table, checked against its schema up front so a typo
# is a definition error rather than a failed expectation with a stack trace in the report.
_COLUMN_KWARGS = ("column", "column_A", "column_B")
_COLUMN_LIST_KWARGS = ("column_list",)
_SUITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Keep terminal lines and report text short: a value sample, not a dump.
_MAX_TEXT = 160
_SAMPLE_VALUES = 5


@dataclass(frozen=True)
class ExpectationResult:
    """Outcome of one expectation, in the order the specs were given."""

    expectation: str
    kwargs: dict
    success: bool
    observed: str  # short human text: observed value or unexpected count (+ a few samples)

    def describe(self) -> str:
        """``type(k=v, ...)``, shortened for a terminal."""
        args = ", ".join(f"{k}={_short(v, 40)}" for k, v in self.kwargs.items())
        return f"{self.expectation}({args})"


@dataclass(frozen=True)
class ValidationReport:
    """Result of :func:`validate_dataframe`."""

    success: bool
    results: tuple[ExpectationResult, ...]
    report_path: Path | None  # Data Docs index.html
    seconds: float  # wall time of the whole validation, report rendering included
    # The rendered page of this validation run (readable without the CDN assets).
    page_path: Path | None = None

    @property
    def failed(self) -> tuple[ExpectationResult, ...]:
        return tuple(r for r in self.results if not r.success)

    def summary_lines(self) -> list[str]:
        """One line per failed expectation, e.g. for the end-of-run summary."""
        return [f"FAILED {r.describe()}: {r.observed}" for r in self.failed]


def validate_dataframe(
    df: DataFrame,
    expectations: Sequence[Mapping[str, Any]],
    *,
    suite_name: str,
    report_dir: Path,
    one_pass: bool = True,
) -> ValidationReport:
    """Run ``expectations`` on ``df`` and write Data Docs into ``report_dir``.

    ``expectations`` are ``{"type": "expect_...", "kwargs": {...}}`` dicts with GE's snake_case
    names. A spec GE can't build (unknown type, missing or unknown kwargs, a column ``df``
    lacks) raises :class:`DefinitionError` before any Spark work; so does any difference
    between the number of expectations requested and the number GE loaded.

    ``df`` is scanned about once (see the module docstring); ``one_pass=False`` runs GE's own
    Spark engine instead, one query per metric (the reference the one-pass engine is tested
    against).
    """
    started = time.perf_counter()
    if not _SUITE_NAME.fullmatch(suite_name) or ".." in suite_name:
        # The suite name becomes a folder of the Data Docs site: keep it inside report_dir.
        raise DefinitionError(
            f"validation suite name {suite_name!r} must match [A-Za-z0-9][A-Za-z0-9_.-]*"
        )
    specs = [_check_spec(i, spec) for i, spec in enumerate(expectations)]
    _check_columns(specs, df.columns)

    gx = _import_gx()
    built = [_build_expectation(i, type_, kwargs) for i, (type_, kwargs) in enumerate(specs)]
    report_dir = Path(report_dir).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)

    with _LOCK:
        context = _ephemeral_context(report_dir)
        datasource = context.data_sources.add_spark(name="tilewise", persist=False)
        # GE otherwise finds "the" session with SparkConnectSession.builder.getOrCreate() and
        # falls back to a classic builder, which could start a JVM next to a Sail session or
        # pick another Connect session: hand it the DataFrame's own session.
        datasource._spark = df.sparkSession
        if one_pass:
            # GE's metrics and results, with the suite's counts in one aggregate query.
            object.__setattr__(datasource, "execution_engine_override", _one_pass_engine())
        asset = datasource.add_dataframe_asset(name=suite_name)
        batch = asset.add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=built))
        _check_loaded(specs, suite.expectations)
        # GE returns results grouped by domain, not in suite order: match them back by the
        # ids the suite store assigned.
        index_of = {exp.id: i for i, exp in enumerate(suite.expectations)}

        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=suite_name,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[_SITE])],
                # BASIC = counts plus up to 20 sample values; SUMMARY/COMPLETE cost extra
                # queries (value counts, every unexpected row) on a big table.
                result_format="BASIC",
            )
        )
        try:
            outcome = checkpoint.run(batch_parameters={"dataframe": df})
        except Exception as e:
            # Expectation-level errors come back as failed results; what escapes is GE itself
            # failing (e.g. 1.24.1 can't serialise a numpy bool from
            # expect_column_quantile_values_to_be_between on classic Spark) or the engine.
            raise TilewiseError(
                f"Great Expectations could not run suite {suite_name!r}: {type(e).__name__}: {e}"
            ) from e
        (result_id, suite_result), *_ = outcome.run_results.items()
        page = _docs_path(context, result_id)
        index = _docs_path(context, None)
    _add_offline_status_icons(report_dir)

    results: list[ExpectationResult | None] = [None] * len(specs)
    for r in suite_result.results:
        i = index_of.get(r.expectation_config.id)
        if i is None:
            raise TilewiseError(f"Great Expectations returned a result nobody asked for: {r}")
        type_, kwargs = specs[i]
        results[i] = ExpectationResult(
            expectation=type_,
            kwargs=kwargs,
            success=bool(r.success),
            observed=_observed(r.result, r.exception_info),
        )
    missing = [specs[i][0] for i, r in enumerate(results) if r is None]
    if missing:
        raise TilewiseError(f"Great Expectations returned no result for: {', '.join(missing)}")
    final = tuple(r for r in results if r is not None)
    return ValidationReport(
        # All-of rather than GE's flag alone, so a report can never say success with a
        # failed line in it.
        success=bool(suite_result.success) and all(r.success for r in final),
        results=final,
        report_path=index,
        seconds=time.perf_counter() - started,
        page_path=page,
    )


# --- building ------------------------------------------------------------------------------


def preload() -> None:
    """Import GE in a background thread: the import takes seconds, and a job that validates at its
    end can hide them behind its engine work (a later import waits for this one to finish)."""
    threading.Thread(target=_import_gx, name="tilewise-preload-gx", daemon=True).start()


def _one_pass_engine() -> type:
    from spark_jobs.quality.one_pass import OnePassSparkEngine

    return OnePassSparkEngine


def _import_gx() -> Any:
    """Import GE lazily (a few seconds; `tilewise check` never needs it), analytics off first."""
    # GE reads this when a context is created; set it before import so no code path in this
    # process can send usage statistics.
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    _defer(_HEAVY_UNTIL_USED)
    import great_expectations as gx
    import great_expectations.checkpoint  # noqa: F401  (gx.checkpoint.UpdateDataDocsAction)

    _share_compiled_templates()
    return gx


# Modules GE imports at start-up for a few distribution expectations and their charts only
# (`from scipy import stats`, `import altair`): about 1 of GE's 2.8 CPU-seconds of import,
# spent in a thread while the job's engine work wants both cores and the GIL. They are bound
# to stand-ins that import the real module on first use, so an expectation that needs one
# still gets it.
_HEAVY_UNTIL_USED = ("scipy.stats", "altair")
_DEFER_LOCK = threading.Lock()


class _Deferred(types.ModuleType):
    """Stands in `sys.modules` for a module not imported yet; the first attribute read imports it
    and copies its namespace in, so later reads (also through names bound to this stand-in,
    like GE's module-level `stats`) are plain lookups."""

    def __getattr__(self, attr: str) -> Any:
        with _DEFER_LOCK:  # not held while importing: the import system has its own locks
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


def _defer(names: Sequence[str]) -> None:
    """Bind each of `names` that is installed but not imported yet to a `_Deferred` stand-in."""
    with _DEFER_LOCK:
        for name in names:
            if name in sys.modules:
                continue
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                spec = None
            if spec is None:
                continue  # not installed: GE handles its absence itself
            stand_in = _Deferred(name)
            # A real spec, so `find_spec` and the import system see a loaded module; reading it
            # does not import anything.
            stand_in.__spec__ = spec
            sys.modules[name] = stand_in


class _TemplateCache:
    """Jinja's compiled templates, kept for the process (see `_share_compiled_templates`)."""

    def __init__(self) -> None:
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Any) -> None:
        code = self.code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)  # checked against the template source's checksum

    def dump_bytecode(self, bucket: Any) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


def _share_compiled_templates() -> None:
    """Data Docs compile GE's Jinja templates anew for every page of every validation (each view
    makes its own Environment): 0.2 s of a 0.6 s validation. Give every view one in-memory bytecode
    cache; the templates and so the pages are the same."""
    import jinja2
    from great_expectations.render.view.view import DefaultJinjaView

    if getattr(DefaultJinjaView, "_tilewise_template_cache", None) is not None:
        return
    cache = type("TemplateCache", (_TemplateCache, jinja2.BytecodeCache), {})()
    init = DefaultJinjaView.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.env.bytecode_cache = cache

    DefaultJinjaView.__init__ = __init__  # type: ignore[method-assign]
    DefaultJinjaView._tilewise_template_cache = cache  # type: ignore[attr-defined]


def _check_spec(index: int, spec: Any) -> tuple[str, dict]:
    where = f"validation expectation #{index + 1}"
    if not isinstance(spec, Mapping):
        raise DefinitionError(f"{where}: expected a mapping with 'type' and 'kwargs', got {spec!r}")
    extra = set(spec) - {"type", "kwargs"}
    if extra:
        raise DefinitionError(f"{where}: unknown field(s) {sorted(extra)}; allowed: type, kwargs")
    type_ = spec.get("type")
    if not isinstance(type_, str) or not type_:
        raise DefinitionError(f"{where}: 'type' must be an expectation name, got {type_!r}")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise DefinitionError(f"{where} ({type_}): 'kwargs' must be a mapping, got {kwargs!r}")
    reserved = _RESERVED_KWARGS & set(kwargs)
    if reserved:
        raise DefinitionError(f"{where} ({type_}): kwargs {sorted(reserved)} are not allowed")
    return type_, plain(kwargs)


def _check_columns(specs: list[tuple[str, dict]], columns: Sequence[str]) -> None:
    known = set(columns)
    for i, (type_, kwargs) in enumerate(specs):
        named = [kwargs[k] for k in _COLUMN_KWARGS if isinstance(kwargs.get(k), str)]
        for k in _COLUMN_LIST_KWARGS:
            if isinstance(kwargs.get(k), list):
                named += [c for c in kwargs[k] if isinstance(c, str)]
        unknown = [c for c in named if c not in known]
        if unknown:
            raise DefinitionError(
                f"validation expectation #{i + 1} ({type_}): no column {', '.join(unknown)} in the "
                f"validated table (columns: {', '.join(columns)})"
            )


def _build_expectation(index: int, type_: str, kwargs: dict) -> Expectation:
    """Build GE's Expectation object, turning every way it can fail into a DefinitionError."""
    import great_expectations.exceptions as gx_exceptions
    from great_expectations.compatibility import pydantic
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )
    from great_expectations.expectations.registry import (
        list_registered_expectation_implementations,
    )

    where = f"validation expectation #{index + 1} ({type_})"
    try:
        return ExpectationConfiguration(type=type_, kwargs=dict(kwargs)).to_domain_obj()
    except gx_exceptions.ExpectationNotFoundError:
        close = difflib.get_close_matches(type_, list_registered_expectation_implementations(), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise DefinitionError(f"{where}: unknown Great Expectations expectation{hint}") from None
    except pydantic.ValidationError as e:
        raise DefinitionError(f"{where}: bad kwargs: {_pydantic_errors(e)}") from None
    except (gx_exceptions.InvalidExpectationConfigurationError, TypeError, ValueError) as e:
        raise DefinitionError(f"{where}: bad kwargs: {e}") from None


def _pydantic_errors(error: Any) -> str:
    # GE's kwargs are unions (a value or a suite-parameter dict), so one mistake yields one
    # message per union member; the first per field is the useful one.
    seen: dict[str, str] = {}
    for err in error.errors():
        field = ".".join(str(p) for p in err.get("loc", ())) or "?"
        seen.setdefault(field, err.get("msg", ""))
    return "; ".join(f"{f}: {m}" for f, m in seen.items())


def _check_loaded(specs: list[tuple[str, dict]], loaded: Sequence[Any]) -> None:
    """ExpectationSuite silently drops what it can't parse: compare counts and types."""
    want = sorted(t for t, _ in specs)
    got = sorted(exp.expectation_type for exp in loaded)
    if want != got:
        lost = list(want)
        for t in got:
            if t in lost:
                lost.remove(t)
        raise DefinitionError(
            f"Great Expectations loaded {len(got)} of {len(want)} expectations"
            + (f"; dropped: {', '.join(lost)}" if lost else "")
        )
    if any(exp.id is None for exp in loaded):
        raise DefinitionError("Great Expectations did not assign ids to the suite's expectations")


def _ephemeral_context(report_dir: Path) -> EphemeralDataContext:
    """In-memory stores, analytics off, progress bars off, one local Data Docs site."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        # tqdm bars per metric batch say nothing useful and clutter the job's own progress.
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={
            _SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(report_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _docs_path(context: EphemeralDataContext, resource: Any) -> Path | None:
    """Local file behind a Data Docs URL (the index when ``resource`` is None)."""
    for site in context.get_docs_sites_urls(resource_identifier=resource, site_names=[_SITE]):
        url = site.get("site_url")
        if url and url.startswith("file://"):
            path = Path(unquote(urlparse(url).path))
            if path.is_file():
                return path
    return None


# Data Docs draw the pass/fail status column with Font Awesome from a CDN: offline (air-gapped
# clusters, CI) that column is blank and a failure can't be spotted. These rules give the icons
# plain Unicode glyphs; they sit first in <head>, so the CDN stylesheet (same selectors, loaded
# later) still wins when it is reachable.
_OFFLINE_MARK = "tilewise-offline-icons"
_OFFLINE_STYLE = (
    f'<style id="{_OFFLINE_MARK}">'
    '.fa-check-circle::before{content:"\\2714"}'
    '.fa-times::before{content:"\\2718"}'
    '.fa-exclamation-triangle::before{content:"\\26A0"}'
    ".text-success{color:#28a745}.text-danger{color:#dc3545}"
    "</style>"
)


def _add_offline_status_icons(report_dir: Path) -> None:
    for page in report_dir.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        if _OFFLINE_MARK in html or "<head>" not in html:
            continue
        page.write_text(html.replace("<head>", "<head>" + _OFFLINE_STYLE, 1), encoding="utf-8")


# --- observed text -------------------------------------------------------------------------


def _observed(result: Mapping[str, Any] | None, exception_info: Any) -> str:
    """Short text for one expectation: the error, the unexpected count, or the observed value."""
    error = _exception_message(exception_info)
    if error:
        return f"error: {_short((error.strip().splitlines() or [error])[0], _MAX_TEXT)}"
    result = result or {}
    if "unexpected_count" in result and result["unexpected_count"] is not None:
        count = int(result["unexpected_count"])
        total = result.get("element_count")
        pct = result.get("unexpected_percent")
        text = f"{count} unexpected" + (f" of {total} rows" if total is not None else "")
        if pct is not None and count:
            text += f" ({pct:.3g}%)"
        sample = result.get("partial_unexpected_list") or []
        if count and sample:
            shown = ", ".join(_short(v, 40) for v in sample[:_SAMPLE_VALUES])
            text += f", e.g. {shown}"
        return _short(text, _MAX_TEXT)
    if "observed_value" in result:
        return f"observed {_short(result['observed_value'], _MAX_TEXT)}"
    # GE leaves the result empty for column-map expectations on an empty table.
    return "no values evaluated"


def _exception_message(info: Any) -> str | None:
    # GE gives either {"raised_exception": bool, "exception_message": str, ...} or, for
    # metric failures, {metric_id: {...same keys...}}.
    if not isinstance(info, Mapping):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "raised an exception")
    for value in info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message") or "raised an exception")
    return None


def _short(value: Any, limit: int) -> str:
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {_short(v, limit)}" for k, v in value.items()) + "}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_short(v, limit) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
