"""Delta commit conflicts (classic Spark + delta-spark) are retried a bounded number of times.

No Delta jars here, so no real conflict can be produced. What is tested is the part tilewise
owns: which exceptions count as conflicts (the real `delta.exceptions` classes, which import
without jars, and the untyped form py4j gives when those classes are not installed), that a
conflict is retried with a backoff, that other errors are not, and that giving up is a clear
`WriteConflict` (a `TableBusy`, exit 3: retry later). That Delta-on-Spark raises these classes on a real
conflict is Delta's documented behaviour, not checked here.
"""

from __future__ import annotations

import pytest

from spark_jobs.storage.locks import TableBusy
from spark_jobs.storage.tables import DELTA_CONFLICTS, WriteConflict, delta_conflict, retry_conflicts


class _Untyped(Exception):
    """What py4j raises for a Java exception pyspark has no class for (its text starts with the Java name)."""


def _typed(name: str) -> Exception:
    import delta.exceptions.base as base

    return getattr(base, name)(message="Files were added to partition [impression_date=2026-01-02]")


@pytest.mark.parametrize("name", sorted(DELTA_CONFLICTS))
def test_every_delta_conflict_class_is_recognised(name: str) -> None:
    assert delta_conflict(_typed(name)) == name


def test_untyped_java_conflict_is_recognised_by_its_class_name() -> None:
    exc = _Untyped("io.delta.exceptions.ConcurrentAppendException: Files were added to the root of the table\n\tat ...")
    assert delta_conflict(exc) == "ConcurrentAppendException"


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("boom"),
        _Untyped("org.apache.spark.SparkException: Job aborted"),
        # A conflict class named only deep in a stack trace is not this error's cause.
        _Untyped("java.io.IOException: disk full\n\tcaused somewhere near io.delta.exceptions.ConcurrentAppendException"),
        _Untyped("io.delta.exceptions.DeltaIllegalArgumentException: bad option"),
    ],
)
def test_other_errors_are_not_conflicts(exc: Exception) -> None:
    assert delta_conflict(exc) is None


def _flaky(failures: list[Exception]):  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def commit() -> None:
        calls.append(1)
        if failures:
            raise failures.pop(0)

    return commit, calls


def test_a_conflict_is_retried_with_backoff_then_succeeds() -> None:
    commit, calls = _flaky([_typed("ConcurrentAppendException"), _typed("MetadataChangedException")])
    slept: list[float] = []
    retry_conflicts("training/t", commit, attempts=3, backoff_s=2.0, sleep=slept.append)
    assert len(calls) == 3
    assert slept == [2.0, 4.0]


def test_giving_up_is_a_clear_write_conflict_with_exit_3() -> None:
    commit, calls = _flaky([_typed("ConcurrentAppendException") for _ in range(5)])
    with pytest.raises(WriteConflict) as info:
        retry_conflicts("blocks/fs", commit, attempts=3, sleep=lambda s: None)
    assert len(calls) == 3
    assert isinstance(info.value, TableBusy) and info.value.exit_code == 3
    text = str(info.value)
    assert "blocks/fs" in text and "ConcurrentAppendException" in text and "3 attempts" in text
    assert "nothing of this run was published" in text
    assert isinstance(info.value.__cause__, Exception)


def test_other_errors_pass_through_at_once() -> None:
    commit, calls = _flaky([RuntimeError("executor lost")])
    with pytest.raises(RuntimeError, match="executor lost"):
        retry_conflicts("blocks/fs", commit, sleep=lambda s: pytest.fail("no retry for a non-conflict"))
    assert len(calls) == 1


def test_a_stale_delta_rs_commit_is_a_conflict() -> None:
    from deltalake.exceptions import CommitFailedError

    assert delta_conflict(CommitFailedError("Failed to commit transaction: 1")) == "CommitFailedError"
    assert delta_conflict(type("CommitFailedError", (Exception,), {})("not delta-rs'")) is None


def test_delta_rs_refusing_a_commit_to_an_append_only_table_is_no_conflict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datetime import date

    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError
    from deltalake.transaction import CommitProperties, RemoveAction

    path = str(tmp_path / "t")
    write_deltalake(path, pa.table({"n": [1], "d": [date(2026, 1, 2)]}), partition_by=["d"],
                    configuration={"delta.appendOnly": "true"})
    table = DeltaTable(path)
    (add,) = pa.table(table.get_add_actions(flatten=False)).to_pylist()
    remove = RemoveAction(add["path"], True, 0, add["size_bytes"], {"d": "2026-01-02"})
    with pytest.raises(CommitFailedError) as info:
        table.create_write_transaction([remove], mode="append", schema=table.schema(), partition_by=["d"],
                                       commit_properties=CommitProperties(max_commit_retries=0))
    assert delta_conflict(info.value) is None  # a retry cannot help: no "another writer" exit 3
