"""Fuzzing the definitions loader: any YAML gives typed definitions or a DefinitionError naming the
file, never another exception (a traceback for the user)."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spark_jobs.defs.loader import load_definitions
from spark_jobs.defs.models import Definitions
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
