"""Table names on the command line: a near miss gets the table meant, anything else the list."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_jobs.defs.loader import load_definitions
from spark_jobs.errors import InputDataError
from spark_jobs.names import builder, check_table_name

DEFS = load_definitions(Path(__file__).resolve().parents[2] / "feature_defs", data_root="/nowhere")


@pytest.mark.parametrize("typed, meant", [
    ("training/engagment", "training/engagement"),
    ("engagement", "training/engagement or consistency/engagement"),
    ("warehouse/training/engagement", "training/engagement"),
    ("blocks/user_activty", "blocks/user_activity"),
])
def test_a_near_miss_names_the_table_meant(typed: str, meant: str) -> None:
    with pytest.raises(InputDataError, match=f"is not a table of these definitions: did you mean {meant}\\?$"):
        check_table_name(DEFS, typed)


def test_anything_else_lists_the_tables_and_a_real_name_passes() -> None:
    for typed in ("zzz", "consistency/nope", "training/user_activity"):
        with pytest.raises(InputDataError, match=r"\(these definitions have blocks/carrier_delays, .*training/engagement"):
            check_table_name(DEFS, typed)
    check_table_name(DEFS, "training/engagement")


def test_each_kind_of_table_names_the_command_that_builds_it() -> None:
    assert builder("blocks/user_activity") == "tilewise backfill --start DATE --end DATE --feature-set user_activity"
    assert builder("snapshots/u") == "tilewise snapshot --as-of TIMESTAMP --feature-set u"
    assert builder("training/engagement") == "tilewise training-set engagement --start DATE --end DATE"
