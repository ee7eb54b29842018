"""Fuzzing the definitions loader: any YAML gives typed definitions or a DefinitionError naming the
file, never another exception (a traceback for the user)."""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spark_jobs.defs.loader import load_definitions
from spark_jobs.defs.models import Definitions
from spark_jobs.defs.sql_allow_list import BARE_FUNCTIONS, FORBIDDEN
from spark_jobs.errors import DefinitionError

REPO = Path(__file__).resolve().parents[2]
FIELDS = [
    "sources", "feature_sets", "training_sets", "path", "format", "timestamp", "dedupe_key", "sql",
    "source", "key", "block_sizes", "lateness", "features", "name", "aggregation", "column", "filter",
    "windows", "default", "n", "quantiles", "impressions", "keys", "labels", "within", "validation",
    "min_rows", "max_null_fraction", "expectations", "type", "kwargs",
]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
    st.sampled_from(["5m", "1h", "1d", "7d", "0m", "-1h", "count", "sum", "approx_quantile", "parquet", "ts",
                     "user_id", "events", "x.*", "a.b_1h", "${data_root}/x", "../etc", "1 = 1; DROP TABLE t", ""]),
    st.text(max_size=12),
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8), st.integers(0, 3)), inner, max_size=5),
    ),
    max_leaves=30,
)


def _load(text: str, sql: dict[str, str] | None = None) -> Definitions | DefinitionError:
    with tempfile.TemporaryDirectory() as tmp:
        defs = Path(tmp) / "feature_defs"
        defs.mkdir()
        (defs / "f.yaml").write_text(text)
        (Path(tmp) / "sql").mkdir()
        for name, body in (sql or {}).items():
            (Path(tmp) / "sql" / name).write_text(body)
        try:
            return load_definitions(defs, data_root=tmp)
        except DefinitionError as exc:
            assert "f.yaml" in str(exc), f"the error names the file: {exc}"
            return exc


def _demo() -> dict[str, Any]:
    return yaml.safe_load((REPO / "feature_defs" / "demo.yaml").read_text())


FUZZ = settings(max_examples=int(os.environ.get("TILEWISE_FUZZ_EXAMPLES", "100")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    _load(text)


@FUZZ
@given(st.dictionaries(st.sampled_from(["sources", "feature_sets", "training_sets", "other"]), trees, max_size=3))
def test_any_tree(tree: dict) -> None:
    _load(yaml.safe_dump(tree, allow_unicode=True))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@FUZZ
@given(st.data())
def test_one_change_to_the_demo(data: st.DataObject) -> None:
    """The shipped demo with one field replaced, removed or duplicated: typed, or a clear error."""
    doc = _demo()
    paths = [p for p in _paths(doc) if p]
    path = data.draw(st.sampled_from(paths))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    action = data.draw(st.sampled_from(["replace", "remove", "duplicate"]))
    if action == "replace":
        parent[path[-1]] = data.draw(trees)
    elif action == "remove":
        del parent[path[-1]]
    elif isinstance(parent, list):
        parent.append(copy.deepcopy(parent[path[-1]]))
    else:
        parent[f"{path[-1]}_copy"] = copy.deepcopy(parent[path[-1]])
    views = (REPO / "sql" / "views.sql").read_text()
    result = _load(yaml.safe_dump(doc, allow_unicode=True), {"views.sql": views})
    if isinstance(result, DefinitionError):
        assert ":" in str(result)  # file:line path: what is wrong


def test_the_demo_itself_loads() -> None:
    views = (REPO / "sql" / "views.sql").read_text()
    result = _load(yaml.safe_dump(_demo()), {"views.sql": views})
    assert isinstance(result, Definitions) and "engagement" in result.training_sets


SQL_WORDS = st.sampled_from(
    ["SELECT", "*", "FROM", "events", "WHERE", "ts", ">", "1", ";", "DROP", "TABLE", "INSERT", "(", ")", ",",
     "views", "JOIN", "ON", "--", "'", "/*", "*/", "user_id", "UNION", "ALL", "WITH", "x", "AS"]
)


@FUZZ
@given(st.lists(st.one_of(SQL_WORDS, st.text(max_size=5)), max_size=20))
def test_any_sql_view(words: list[str]) -> None:
    doc = {
        "sources": {
            "events": {"path": "${data_root}/e", "format": "parquet", "timestamp": "ts"},
            "v": {"sql": "v.sql", "timestamp": "ts"},
        }
    }
    _load(yaml.safe_dump(doc), {"v.sql": " ".join(words)})


# -- forbidden calls, however they are hidden ----------------------------------------------------
# A forbidden call is spelled in any casing, quoted or qualified, spaced or commented away from its
# "(", and wrapped in allowed calls, CASE, lambdas, casts and string concatenation next to strings
# and comments that look like SQL. It is always refused, naming the function; the same text with
# an allowed call in its place loads, so the refusals are not an accident of the wrapping.

WRAPPERS = [
    "abs({})", "coalesce(NULL, {})", "concat('a', {}, 'b')", "'x' || {} || 'y'", "({})", "{} + 1",
    "CASE WHEN {} IS NULL THEN 1 ELSE 2 END", "transform(array(1), x -> {})", "CAST({} AS STRING)",
    "{}::STRING", "if(true, {}, NULL)", "named_struct('k', {})", "array({})[0]", "upper('reflect(' || {})",
    "concat(\"it's\", {})", "concat('a\\\\', \"--\", {})", "concat('/*', {}, '*/')", "concat(r'a\\', {})",
    "concat(`rand`, {})", "nvl(`current_date x`, {})",
]
COMMENTED = ["/* reflect( */ {}", "{} -- rand()\n", "/* -- rand() */ {}", "{} /* ' */", "{} -- /* \n"]
GAPS = ["", " ", "\n", "\t"]
COMMENT_GAPS = ["/* x */", "/**/", "-- ( \n", "/* ( */"]


def _cased(name: str, flips: list[bool]) -> str:
    return "".join(c.upper() if flip else c for c, flip in zip(name, flips + [False] * len(name)))


@st.composite
def hidden_calls(draw: st.DrawFn, comments: bool) -> tuple[str, str, str]:
    """(forbidden name, an expression calling it, the same expression calling abs(1) instead)."""
    name = draw(st.sampled_from(sorted(FORBIDDEN)))
    spelled = _cased(name, draw(st.lists(st.booleans(), max_size=len(name))))
    bare = name in BARE_FUNCTIONS and draw(st.booleans())
    form = draw(st.sampled_from(["plain", "backquoted", "builtin", "system.builtin", "quoted parts"]))
    if bare and form not in ("plain", "backquoted"):
        form = "plain"
    spelled = {
        "plain": spelled, "backquoted": f"`{spelled}`", "builtin": f"builtin.{spelled}",
        "system.builtin": f"SyStem.builtin.{spelled}", "quoted parts": f"`system`.`builtin`.`{spelled}`",
    }[form]
    args = draw(st.sampled_from(["", "'java.lang.System', 'getProperty', 'user.home'", "1", "'ref' || 'lect'"]))
    gap = draw(st.sampled_from(GAPS + (COMMENT_GAPS if comments else [])))
    call = spelled if bare else f"{spelled}{gap}({args})"
    expr, harmless = call, "abs(1)"
    for wrapper in draw(st.lists(st.sampled_from(WRAPPERS + (COMMENTED if comments else [])), max_size=6)):
        expr, harmless = wrapper.format(expr), wrapper.format(harmless)
    return name, expr, harmless


FILTER_DEFS = """\
sources:
  events: {path: "${data_root}/e", format: parquet, timestamp: ts}
feature_sets:
  fs:
    source: events
    key: user_id
    block_sizes: [5m]
    features:
      - {name: hits, aggregation: count, windows: [1h], filter: FILTER}
"""


@FUZZ
@given(hidden_calls(comments=False))
def test_a_forbidden_call_never_gets_through_a_filter(case: tuple[str, str, str]) -> None:
    name, expr, harmless = case
    result = _load(FILTER_DEFS.replace("FILTER", json.dumps(f"{expr} IS NOT NULL")))
    assert isinstance(result, DefinitionError), f"{expr} got through"
    assert "features[0] (hits).filter" in str(result) and name in str(result).lower(), str(result)
    assert isinstance(_load(FILTER_DEFS.replace("FILTER", json.dumps(f"{harmless} IS NOT NULL"))), Definitions)


VIEW_DEFS = """\
sources:
  events: {path: "${data_root}/e", format: parquet, timestamp: ts}
  v: {sql: v.sql, timestamp: ts}
"""


@FUZZ
@given(hidden_calls(comments=True), st.sampled_from(["SELECT {} AS v FROM events", "SELECT * FROM events WHERE {} IS NULL",
                                                     "WITH w AS (SELECT *, {} AS v FROM events) SELECT * FROM w"]))
def test_a_forbidden_call_never_gets_through_a_view(case: tuple[str, str, str], query: str) -> None:
    name, expr, harmless = case
    result = _load(VIEW_DEFS, {"v.sql": query.format(expr)})
    assert isinstance(result, DefinitionError), f"{query.format(expr)} got through"
    assert "sources.v.sql" in str(result) and name in str(result).lower(), str(result)
    assert isinstance(_load(VIEW_DEFS, {"v.sql": query.format(harmless)}), Definitions)
