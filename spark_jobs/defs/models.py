"""Typed, frozen definitions: sources, feature sets, training sets. No Spark here.

Each model checks its own invariants and reports every problem at the path of the field at
fault (see :class:`Invalid`), so the loader can point at file and line. References to other
entries are checked against the validation context the loader passes: ``sources`` (every
defined source name), ``feature_sets`` (valid feature sets by name, to resolve a training set's
``fs.feature_window`` strings), ``invalid_feature_sets`` (names whose problems are reported
already) and ``feature_sets_unreadable`` (a ``feature_sets`` section is no mapping: any name may
have been in it). A reference whose target is broken is not reported again: one error per
mistake. Cycles between SQL views are checked by :class:`Definitions`.

Definitions come from many teams, so text that ends up in SQL is checked too (by
:mod:`spark_jobs.defs.sql_guard`): a view is one SELECT over sources, a filter one boolean
expression, and both call only the functions of the allow-list.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from spark_jobs.aggregations import REGISTRY
from spark_jobs.defs.durations import Duration, parse_duration
from spark_jobs.defs.sql_guard import SqlProblems, check_filter, check_view_sql
from spark_jobs.names import IMPRESSION_ID, WATERMARK, cutoff_column

# Aggregation name -> the parameters it requires (and the only ones it accepts): the registry's.
AGGREGATIONS: dict[str, tuple[str, ...]] = {name: agg.params for name, agg in REGISTRY.items()}
# Aggregations that need no `column` (count counts events, or non-null values of a column).
COLUMN_OPTIONAL: frozenset[str] = frozenset(name for name, agg in REGISTRY.items() if not agg.needs_column)

NAME = re.compile(r"[a-z][a-z0-9_]*")
_NAME_MAX = 100

Loc = tuple[str | int, ...]


# -- problems ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong at `loc` below the validated value; `message` starts with the bad value."""

    loc: Loc
    message: str


class Invalid(ValueError):
    """Raised by validators with every problem found, each at its own path."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(p.message for p in self.problems))


class Consequence(Invalid):
    """Invalid only because of problems reported elsewhere (a broken feature set it refers to):
    nothing more to say, so the user reads one error per mistake."""

    def __init__(self) -> None:
        super().__init__(())


def _raise_any(problems: list[Problem]) -> None:
    if problems:
        raise Invalid(problems)


def show(value: object, limit: int = 80) -> str:
    """A value as a short YAML-like text for messages (``7m``, ``[1h, 1d]``, ``"a; b"``)."""
    if isinstance(value, str):
        text = value if re.fullmatch(r"[\w./${}:*+-]+", value) else '"' + value.replace('"', '\\"') + '"'
    else:
        try:
            text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 30).strip()
            text = text.removesuffix("\n...").strip()
        except Exception:  # anything YAML cannot dump is shown as Python sees it
            text = repr(value)
        text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_of(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "none"


def unknown_field(key: object, allowed: Collection[str]) -> str:
    """The message for a field name that the model does not have."""
    close = difflib.get_close_matches(key, allowed, n=1) if isinstance(key, str) else []
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{show(key)} is not a known field{hint} (allowed: {', '.join(allowed)})"


# -- field types -------------------------------------------------------------------------------


def check_name(value: str) -> str:
    if not NAME.fullmatch(value) or len(value) > _NAME_MAX:
        raise ValueError(
            f"{show(value)} is not a valid name: use lowercase letters, digits and _, starting with a letter"
            f" (at most {_NAME_MAX} characters), e.g. user_activity"
        )
    return value


def _to_duration(value: object) -> Duration:
    return value if isinstance(value, Duration) else parse_duration(value)  # type: ignore[arg-type]


def _one_or_many(value: object) -> object:
    return (value,) if isinstance(value, str) else value


def _scalar(value: object) -> object:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"{show(value)} is not a valid default: use a number, a text or true/false")


def _check_aggregation(value: str) -> str:
    if value not in AGGREGATIONS:
        raise ValueError(f"{show(value)} is not an aggregation (valid: {', '.join(AGGREGATIONS)})")
    return value


def _check_expectation_type(value: str) -> str:
    if not re.fullmatch(r"expect_[a-z0-9_]+", value):
        raise ValueError(
            f"{show(value)} is not an expectation type: use the snake_case name of a Great Expectations"
            " expectation, e.g. expect_column_values_to_be_between"
        )
    return value


def _check_filter(value: str) -> str:
    try:
        return check_filter(value)
    except SqlProblems as exc:
        raise Invalid(Problem((), f"{show(value)} {problem}") for problem in exc.problems) from None


def _check_column(value: str) -> str:
    if "`" in value:
        raise ValueError(f"{show(value)} is not a valid column name: a ` would end the quoted name in SQL")
    return value


def _defined_source(name: str, info: ValidationInfo) -> str:
    sources = (info.context or {}).get("sources")
    if sources is not None and name not in sources:
        raise ValueError(f"{name} is not a source (defined: {_one_of(sources)})")
    return name


Name = Annotated[str, Field(strict=True), AfterValidator(check_name)]
Text = Annotated[str, Field(strict=True, min_length=1)]
# A column name: the jobs write it into SQL between backquotes, so it may not hold one.
Column = Annotated[Text, AfterValidator(_check_column)]
Columns = Annotated[tuple[Column, ...], BeforeValidator(_one_or_many)]
DurationField = Annotated[Duration, PlainValidator(_to_duration), PlainSerializer(str)]
Filter = Annotated[str, Field(strict=True), AfterValidator(_check_filter)]
# A source's name; checked against the "sources" of the validation context when there is one.
SourceRef = Annotated[Name, AfterValidator(_defined_source)]
Fraction = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]
Scalar = Annotated[int | float | str | bool | None, PlainValidator(_scalar)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # Fields the loader fills in (from the mapping key, the file, the SQL file); not YAML keys.
    DERIVED: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def yaml_fields(cls) -> list[str]:
        return [name for name in cls.model_fields if name not in cls.DERIVED]

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        # Instead of pydantic's "extra inputs are not permitted": name the field, list the right ones.
        if isinstance(data, Mapping):
            unknown = [key for key in data if key not in cls.model_fields]
            _raise_any([Problem((key,), unknown_field(key, cls.yaml_fields())) for key in unknown])
        return data


# -- sources -----------------------------------------------------------------------------------


class Source(_Model):
    """Where events come from: files under `path`, or a SQL view (`sql`) over other sources."""

    DERIVED = frozenset({"name", "file", "sql_file", "depends_on"})

    name: Name
    file: str = ""
    path: Text | None = None
    format: Literal["parquet", "delta", "csv", "json"] | None = None
    timestamp: Column
    dedupe_key: Columns = ()
    sql_file: str | None = None
    sql: str | None = None
    depends_on: tuple[Name, ...] = ()

    @field_validator("sql")
    @classmethod
    def _single_select(cls, sql: str | None, info: ValidationInfo) -> str | None:
        if sql is None:
            return None
        try:
            return check_view_sql(sql)
        except SqlProblems as exc:
            file = show(info.data.get("sql_file") or "the view")
            raise Invalid(Problem((), f"{file} {problem}") for problem in exc.problems) from None

    @model_validator(mode="after")
    def _path_or_sql(self) -> Source:
        problems: list[Problem] = []
        if self.path is not None and self.sql is not None:
            problems.append(Problem(("sql",), f"{show(self.sql_file)}: a source reads a path or a sql view, not both"))
        elif self.path is None and self.sql is None:
            problems.append(Problem((), "a source needs either path (with format) or sql (a view under sql/)"))
        elif self.path is not None and self.format is None:
            problems.append(Problem(("format",), "missing: a path needs a format (parquet, delta, csv or json)"))
        if self.path is not None and "${" in self.path:
            problems.append(
                Problem(("path",), f"{show(self.path)} uses an unknown variable: only ${{data_root}} is substituted")
            )
        if self.depends_on and self.sql is None:
            problems.append(
                Problem(("depends_on",), f"{show(list(self.depends_on))}: only a sql view depends on sources")
            )
        _raise_any(problems)
        return self


# -- feature sets ------------------------------------------------------------------------------


class Feature(_Model):
    """One aggregation of a column over several windows; output columns `{name}_{window}`."""

    name: Name
    aggregation: Annotated[str, Field(strict=True), AfterValidator(_check_aggregation)]
    column: Column | None = None
    filter: Filter | None = None
    windows: Annotated[tuple[DurationField, ...], Field(min_length=1)]
    default: Scalar = None
    n: Annotated[int, Field(strict=True, ge=1)] | None = None
    quantiles: Annotated[tuple[Fraction, ...], Field(min_length=1)] | None = None

    def output_column(self, window: Duration) -> str:
        return f"{self.name}_{window}"

    @property
    def output_columns(self) -> tuple[str, ...]:
        return tuple(self.output_column(w) for w in self.windows)

    @model_validator(mode="after")
    def _parameters(self) -> Feature:
        agg, takes = self.aggregation, AGGREGATIONS[self.aggregation]
        problems = []
        if self.column is None and agg not in COLUMN_OPTIONAL:
            problems.append(Problem(("column",), f"missing: {agg} needs the column it aggregates"))
        for param in sorted({p for params in AGGREGATIONS.values() for p in params}):
            value = getattr(self, param)
            if value is not None and param not in takes:
                problems.append(
                    Problem((param,), f"{show(value)}: {agg} has no parameter {param} ({agg} takes {_one_of(takes)})")
                )
            elif value is None and param in takes:
                problems.append(Problem((param,), f"missing: {agg} needs {param}"))
        seen: dict[Duration, Duration] = {}
        for i, window in enumerate(self.windows):
            if window in seen:
                problems.append(Problem(("windows", i), f"{window} repeats the window {seen[window]}"))
            seen.setdefault(window, window)
        _raise_any(problems)
        return self


class FeatureSet(_Model):
    """Features of one source per entity key, pre-aggregated in blocks of `block_sizes`."""

    DERIVED = frozenset({"name", "file", "lines"})

    name: Name
    file: str = ""
    # Line of each feature's fields in `file` (`features.0.filter` -> line), for errors found
    # later against the source's columns.
    lines: dict[str, int] = {}
    source: SourceRef
    key: Annotated[Columns, Field(min_length=1)]
    block_sizes: Annotated[tuple[DurationField, ...], Field(min_length=1)]
    lateness: Annotated[DurationField, Field(validate_default=True)] = Duration(86400, "d")
    features: Annotated[tuple[Feature, ...], Field(min_length=1)]

    @property
    def finest(self) -> Duration:
        return self.block_sizes[0]

    @property
    def output_columns(self) -> tuple[str, ...]:
        return tuple(column for feature in self.features for column in feature.output_columns)

    def line(self, index: int, field: str) -> int:
        """The line of a field of feature `index` in `file` (the feature's own line if unknown)."""
        return self.lines.get(f"features.{index}.{field}") or self.lines.get(f"features.{index}", 1)

    def where(self, index: int, field: str) -> str:
        """`file:line path` of a field of feature `index` of this set, as the loader shows it."""
        return f"{self.file}:{self.line(index, field)} feature_sets.{self.name}.features[{index}] ({self.features[index].name}).{field}"

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"feature set {self.name} has no feature {name}")

    @field_validator("block_sizes")
    @classmethod
    def _finest_first(cls, sizes: tuple[Duration, ...]) -> tuple[Duration, ...]:
        problems = []
        for i, (smaller, size) in enumerate(pairwise(sizes), start=1):
            if size <= smaller:
                problems.append(Problem((i,), f"{size} is not longer than {smaller}: list block sizes finest first"))
            elif not size.is_multiple_of(smaller):
                problems.append(Problem((i,), f"{size} is not a multiple of the block size before it, {smaller}"))
        _raise_any(problems)
        return sizes

    @field_validator("lateness")
    @classmethod
    def _whole_blocks(cls, lateness: Duration, info: ValidationInfo) -> Duration:
        sizes = info.data.get("block_sizes")
        if sizes and not lateness.is_multiple_of(sizes[0]):
            raise ValueError(f"{lateness} is not a multiple of the finest block {sizes[0]} (lateness defaults to 1d)")
        return lateness

    @model_validator(mode="after")
    def _features_fit(self) -> FeatureSet:
        problems = []
        finest = self.finest
        names: dict[str, int] = {}
        for i, feature in enumerate(self.features):
            if feature.name in names:
                first = f"features[{names[feature.name]}]"
                problems.append(Problem(("features", i, "name"), f"{feature.name} is defined twice (also {first})"))
            names.setdefault(feature.name, i)
        taken = {column: "a key column" for column in self.key} | {name: "the name of a feature" for name in names}
        for i, feature in enumerate(self.features):
            for j, window in enumerate(feature.windows):
                column = feature.output_column(window)
                loc = ("features", i, "windows", j)
                if not window.is_multiple_of(finest):
                    problems.append(Problem(loc, f"{window} is not a multiple of the finest block {finest}"))
                elif column in taken:
                    problems.append(Problem(loc, f"{window}: output column {column} is also {taken[column]}"))
        _raise_any(problems)
        return self


# -- training sets -----------------------------------------------------------------------------


class FeatureRef(_Model):
    """One output column of a training set: a feature of a feature set at one window."""

    feature_set: Name
    feature: Name
    window: DurationField

    @property
    def column(self) -> str:
        return f"{self.feature}_{self.window}"

    def __str__(self) -> str:
        return f"{self.feature_set}.{self.column}"


class Label(_Model):
    """1 when an event of `source` passing `filter` has the impression's id within `within`."""

    name: Name
    source: SourceRef
    filter: Filter | None = None
    within: DurationField


class ExpectationSpec(_Model):
    """A Great Expectations expectation by its snake_case name, with its kwargs."""

    type: Annotated[str, Field(strict=True), AfterValidator(_check_expectation_type)]
    kwargs: dict[Text, Any] = {}

    @model_validator(mode="after")
    def _spark_row_condition(self) -> ExpectationSpec:
        # Great Expectations hands a row_condition to Spark as SQL when condition_parser is spark
        # (or the condition is a pass_through one): it is a filter like any other.
        condition = self.kwargs.get("row_condition")
        loc: Loc = ("kwargs", "row_condition")
        if isinstance(condition, dict):
            condition, loc = condition.get("pass_through_filter"), (*loc, "pass_through_filter")
        elif self.kwargs.get("condition_parser") != "spark":
            return self
        if isinstance(condition, str):
            try:
                _check_filter(condition)
            except Invalid as exc:
                raise Invalid(Problem((*loc, *p.loc), p.message) for p in exc.problems) from None
        return self


class Validation(_Model):
    """The user's data-quality checks of a training set (built-in checks always run besides)."""

    min_rows: Annotated[int, Field(strict=True, ge=0)] | None = None
    max_null_fraction: dict[Text, Fraction] = {}
    expectations: tuple[ExpectationSpec, ...] = ()
    # Logged name -> the lowest match rate a date may have (see `Logged`).
    min_match_rate: dict[Name, Fraction] = {}


class Logged(_Model):
    """Feature values the online model saw, logged with each impression (forward logging).

    `values` maps each logged name to the backfilled output column it should equal; the values
    are fields of the struct or map column `column` of the impressions, or top-level columns of
    their own when `column` is omitted. `tolerance` is relative, for floating values.
    """

    column: Column | None = None
    values: Annotated[dict[Name, Column], Field(min_length=1)]
    tolerance: Annotated[float, Field(ge=0.0)] = 1e-9


class TrainingSet(_Model):
    """Impressions joined with point-in-time features and delayed labels."""

    DERIVED = frozenset({"name", "file", "lines"})

    name: Name
    file: str = ""
    # Line of some fields in `file` (`logged.values.<name>`, `labels.0.filter` -> line), for
    # errors found later against the data (a logged value the impressions lack, a label filter
    # that does not resolve on its source).
    lines: dict[str, int] = {}
    impressions: SourceRef
    keys: dict[Column, Column] = {}
    features: Annotated[tuple[FeatureRef, ...], Field(min_length=1)]
    labels: tuple[Label, ...] = ()
    logged: Logged | None = None
    validation: Validation = Validation()

    def logged_column(self, name: str) -> str:
        """The training table's column of logged value `name`."""
        return f"logged_{name}"

    def logged_problems(self, columns: Mapping[str, Collection[str] | None]) -> list[str]:
        """`file:line field: problem` for each logged value the impressions do not have.

        `columns`: each impression column -> the field names of a struct column, or None when
        its fields are not known from the schema (a map's keys are data).
        """
        if self.logged is None:
            return []
        top = self.logged.column
        if top is not None:
            if top not in columns:
                return [f"{self.where('logged.column')}: {show(top)} is not a column of the impressions ({_one_of(columns)})"]
            fields = columns[top]
            if fields is None:
                return []
            what, known = f"a field of the impressions' column {top}", fields
        else:
            what, known = "a column of the impressions", columns
        return [
            f"{self.where(f'logged.values.{name}')}: {name} is not {what} ({_one_of(known)})"
            for name in self.logged.values
            if name not in known
        ]

    def where(self, field: str) -> str:
        """`file:line field` of a field of this training set, for messages."""
        path = f"training_sets.{self.name}.{field}"
        return f"{self.file}:{self.lines.get(field, 1)} {path}"

    @property
    def feature_sets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ref.feature_set for ref in self.features))

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return tuple(ref.column for ref in self.features)

    def impression_column(self, key: str) -> str:
        """The impression column that holds feature-set key column `key`."""
        return self.keys.get(key, key)

    @field_validator("features", mode="before")
    @classmethod
    def _resolve(cls, value: Any, info: ValidationInfo) -> Any:
        context = info.context or {}
        if "feature_sets" not in context or not isinstance(value, (list, tuple)):
            return value
        if context.get("feature_sets_unreadable"):
            raise Consequence()
        refs = resolve_feature_refs(value, context["feature_sets"], context.get("invalid_feature_sets", ()))
        if value and not refs:
            raise Consequence()  # every reference is to a broken feature set: not "should not be empty"
        return refs

    @model_validator(mode="after")
    def _known_keys(self, info: ValidationInfo) -> TrainingSet:
        feature_sets = (info.context or {}).get("feature_sets")
        if feature_sets is None or any(fs not in feature_sets for fs in self.feature_sets):
            return self
        key_columns = {column for fs in self.feature_sets for column in feature_sets[fs].key}
        what = f"is not a key column of the feature sets used (keys: {_one_of(key_columns)})"
        _raise_any([Problem(("keys", key), f"{show(key)} {what}") for key in self.keys if key not in key_columns])
        return self

    @model_validator(mode="after")
    def _label_names(self, info: ValidationInfo) -> TrainingSet:
        context = info.context or {}
        # With a broken feature set in the definitions, a logged column may be one of its features:
        # that error is reported there, not again here.
        columns_known = not (context.get("invalid_feature_sets") or context.get("feature_sets_unreadable"))
        taken = {ref.column: f"the column of feature {ref}" for ref in self.features}
        taken |= {cutoff_column(fs): f"the cutoff column of {fs}" for fs in self.feature_sets}
        taken[IMPRESSION_ID] = "the impression id column"
        problems = []
        for i, label in enumerate(self.labels):
            if label.name in taken:
                problems.append(Problem(("labels", i, "name"), f"{label.name} is already {taken[label.name]}"))
            taken.setdefault(label.name, f"the name of labels[{i}]")
        logged = self.logged.values if self.logged else {}
        for name, column in logged.items():
            loc: Loc = ("logged", "values", name)
            if self.logged_column(name) in taken:
                problems.append(Problem(loc, f"{name}: its column {self.logged_column(name)} is already {taken[self.logged_column(name)]}"))
            if column not in self.feature_columns and columns_known:
                problems.append(Problem(loc, f"{show(column)} is not a feature column of this training set (columns: {_one_of(self.feature_columns)})"))
        for name in self.validation.min_match_rate:
            if name not in logged:
                problems.append(Problem(("validation", "min_match_rate", name), f"{name} is not a logged value of this training set (logged: {_one_of(logged)})"))
        _raise_any(problems)
        return self


def resolve_feature_refs(
    items: Iterable[object], feature_sets: Mapping[str, FeatureSet], invalid: Collection[str] = ()
) -> tuple[FeatureRef, ...]:
    """Resolve `fs.feature_window`, `fs.feature` (every window) and `fs.*` (everything).

    Duplicates are dropped, first occurrence kept. References to feature sets in `invalid` (named
    but broken, their problems reported elsewhere) are skipped.
    """
    refs: dict[FeatureRef, int] = {}
    columns: dict[str, FeatureRef] = {}
    problems = []
    for i, item in enumerate(items):
        try:
            found = _resolve_one(item, feature_sets, invalid)
        except ValueError as exc:
            problems.append(Problem((i,), str(exc)))
            continue
        for ref in found:
            if ref in refs:
                continue
            other = columns.get(ref.column)
            if other is not None:
                problems.append(Problem((i,), f"{ref} gives column {ref.column}, as {other} does: columns are unique"))
            refs[ref] = i
            columns.setdefault(ref.column, ref)
    _raise_any(problems)
    return tuple(refs)


def _resolve_one(item: object, feature_sets: Mapping[str, FeatureSet], invalid: Collection[str]) -> list[FeatureRef]:
    text = str(item) if isinstance(item, FeatureRef) else item
    if not isinstance(text, str) or text.count(".") != 1:
        raise ValueError(
            f"{show(text)} is not a feature reference: write feature_set.feature_window (e.g. snap.views_1h),"
            " feature_set.feature (all its windows) or feature_set.* (all features)"
        )
    fs_name, rest = text.split(".")
    if fs_name in invalid:
        return []
    fs = feature_sets.get(fs_name)
    if fs is None:
        defined = _one_of({*feature_sets, *invalid})
        raise ValueError(f"{show(text)}: {show(fs_name)} is not a feature set (defined: {defined})")
    if rest == "*":
        return [_ref(fs, f, w) for f in fs.features for w in f.windows]
    features = {f.name: f for f in fs.features}
    if rest in features:
        return [_ref(fs, features[rest], w) for w in features[rest].windows]
    prefixes = [f for f in fs.features if rest.startswith(f.name + "_")]
    if not prefixes:
        raise ValueError(f"{show(text)}: {fs_name} has no feature {show(rest)} (features: {_one_of(features)})")
    feature = max(prefixes, key=lambda f: len(f.name))
    window = rest[len(feature.name) + 1 :]
    for w in feature.windows:
        if str(w) == window:
            return [_ref(fs, feature, w)]
    windows = ", ".join(str(w) for w in feature.windows)
    what = f"feature {fs_name}.{feature.name} has no window {show(window)} (windows: {windows})"
    raise ValueError(f"{show(text)}: {what}")


def _ref(fs: FeatureSet, feature: Feature, window: Duration) -> FeatureRef:
    return FeatureRef(feature_set=fs.name, feature=feature.name, window=window)


# -- all definitions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnsUsed:
    """Columns of a source the definitions need: those they name (timestamp, dedupe key, keys,
    aggregated, impression and label columns), and the words of the SQL text over it (filters and
    views, which are not parsed: any word may be a column, in lower case)."""

    named: frozenset[str]
    words: frozenset[str]


@dataclass(frozen=True)
class SourceRead:
    """What reading one source needs: its definition, the columns used of it, and, for a SQL
    view, the same of every source it reads (registered as temporary views under their names)."""

    source: Source
    columns: ColumnsUsed
    reads: tuple[SourceRead, ...] = ()

    @property
    def name(self) -> str:
        return self.source.name


class Definitions(_Model):
    """Every definition, by name, and the hash of every file they came from."""

    sources: dict[str, Source] = {}
    feature_sets: dict[str, FeatureSet] = {}
    training_sets: dict[str, TrainingSet] = {}
    files: dict[str, str] = {}  # "<folder name>/<path in it>" -> sha256, of every YAML and SQL file read

    def columns_used(self, name: str) -> ColumnsUsed:
        """Columns of source `name` these definitions need (see `ColumnsUsed`); a SQL view that
        reads the source passes columns through (SELECT *), so what its readers need counts too."""
        named: set[str] = set()
        texts: list[str] = []
        src = self.sources[name]
        named.update([src.timestamp, *src.dedupe_key])
        for fs in self.feature_sets.values():
            if fs.source == name:
                named.update(fs.key)
                named.update(f.column for f in fs.features if f.column)
                texts.extend(f.filter for f in fs.features if f.filter)
        for ts in self.training_sets.values():
            if ts.impressions == name:
                named.add(IMPRESSION_ID)
                named.update(ts.impression_column(k) for fs in ts.feature_sets for k in self.feature_sets[fs].key)
                texts.append(WATERMARK)
            for label in ts.labels:
                if label.source == name:
                    named.add(IMPRESSION_ID)
                    texts.append(label.filter or "")
        words: set[str] = set()
        for view in self.sources.values():
            if name in view.depends_on:
                texts.append(view.sql or "")
                view_used = self.columns_used(view.name)
                words.update(c.lower() for c in view_used.named)
                words.update(view_used.words)
        for text in texts:
            words.update(w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
        return ColumnsUsed(frozenset(named), frozenset(words))

    def source_read(self, name: str) -> SourceRead:
        """Source `name` as `storage.sources` reads it: with the columns used and its view's sources."""
        src = self.sources[name]
        return SourceRead(src, self.columns_used(name), tuple(self.source_read(dep) for dep in src.depends_on))

    @model_validator(mode="after")
    def _no_view_cycles(self) -> Definitions:
        problems = []
        for cycle in _cycles({name: source.depends_on for name, source in self.sources.items()}):
            sql_file = self.sources[cycle[0]].sql_file
            problems.append(
                Problem(("sources", cycle[0], "sql"), f"{show(sql_file)}: SQL views form a cycle: {' -> '.join(cycle)}")
            )
        _raise_any(problems)
        return self


def _cycles(graph: Mapping[str, Iterable[str]]) -> list[tuple[str, ...]]:
    """Each cycle of `graph` once, as a path that ends where it starts (`a -> b -> a`)."""
    cycles: list[tuple[str, ...]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in graph.get(node, ()):
            if nxt in path:
                cycles.append((*path[path.index(nxt) :], nxt))
            elif nxt in graph and nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            visit(node, [node])
    return cycles
