"""What counts as a definition change for a stored table (no Spark)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_jobs.defs.lineage import block_lineage, changes, fingerprint, training_lineage
from tests.engines.test_point_in_time import DEFS
from tests.helpers import load, write_defs


def _both(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    defs = load(write_defs(tmp_path / str(abs(hash(text))), text), tmp_path / "data")
    return block_lineage(defs, "acts"), training_lineage(defs, "ts")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('"${data_root}/events"', '"/elsewhere/events"'),  # data moved
        ("windows: [5m, 1h, 6h, 1d, 2d]", "windows: [5m, 1h]"),  # windows use blocks, are not in them
        ("default: -1,", "default: -2,"),
        ("lateness: 1d", "lateness: 2d"),
    ],
)
def test_changes_that_keep_stored_rows_valid(tmp_path: Path, old: str, new: str) -> None:
    assert old in DEFS
    before, after = _both(tmp_path, DEFS), _both(tmp_path, DEFS.replace(old, new))
    assert fingerprint(before[0]) == fingerprint(after[0])
    if "windows" not in old:  # a training set's columns do depend on the windows
        assert fingerprint(before[1]) == fingerprint(after[1])


@pytest.mark.parametrize(
    ("old", "new", "block_change"),
    [
        ("filter: \"kind = 'click'\"", "filter: \"kind = 'share'\"", "features.clicks.filter: \"kind = 'click'\" -> \"kind = 'share'\""),
        ("aggregation: min, column: value", "aggregation: min, column: kind", "features.lo.column: 'value' -> 'kind'"),
        ("n: 3", "n: 4", "features.recent.n: 3 -> 4"),
        ("dedupe_key: event_id}", "dedupe_key: kind}", "source.events.dedupe_key"),
        ("block_sizes: [5m, 1h, 1d]", "block_sizes: [5m, 1h]", "block_sizes: [300, 3600, 86400] -> [300, 3600]"),
    ],
)
def test_changes_that_invalidate_blocks_and_training_rows(tmp_path: Path, old: str, new: str, block_change: str) -> None:
    assert old in DEFS
    before, after = _both(tmp_path, DEFS), _both(tmp_path, DEFS.replace(old, new))
    assert any(c.startswith(block_change) for c in changes(before[0], after[0])), changes(before[0], after[0])
    assert fingerprint(before[1]) != fingerprint(after[1]), "the training set used those blocks"


def test_label_change_only_touches_the_training_set(tmp_path: Path) -> None:
    before, after = _both(tmp_path, DEFS), _both(tmp_path, DEFS.replace("within: 1h", "within: 2h"))
    assert before[0] == after[0]
    assert changes(before[1], after[1]) == ["labels.clicked.within: 3600 -> 7200"]


def test_a_sketch_size_change_invalidates_blocks_of_that_sketch_only(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from spark_jobs.aggregations import REGISTRY

    before = _both(tmp_path, DEFS)[0]
    assert "sketch_size" not in before["features"]["total"], "only sketches carry a size"
    monkeypatch.setattr(type(REGISTRY["approx_count_distinct"]), "sketch_size", 1024)
    after = _both(tmp_path, DEFS + " ")[0]
    assert changes(before, after) == [f"features.kinds.sketch_size: {before['features']['kinds']['sketch_size']} -> 1024"]
