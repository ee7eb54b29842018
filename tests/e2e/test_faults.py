"""Faults: kill -9 mid-run, two writers on one table, a write failing half-way.

What must hold every time: a table is readable at its last committed version, no run publishes
part of its output, and re-running converges to what one clean run gives. The CLI tests run on
Sail (Delta); the storage-level tests run on both engines (classic Spark: tilewise's Parquet
copy-on-write log). Synchronisation is by what the processes print or leave on disk, polled with
a deadline; nothing waits a fixed time.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from spark_jobs.storage.locks import table_lock
from tests.helpers import REPO, TILEWISE, cli_env, manifests, table_content, tilewise

BLOCKS = "blocks/user_activity"
TRAINING = "training/engagement"
# Labels are asserted complete, so both days' impressions are mature: every run writes 2 partitions.
CUTOFF = ["--label-cutoff", "2026-01-04T00:00:00"]


def _common(wh: Path, data: Path) -> list[str]:
    return ["--set", f"warehouse={wh}", "--set", f"data_root={data}"]


def _wait_for(what: str, check: Callable[[], bool], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.1)


def _delta_version(wh: Path, table: str) -> int | None:
    from deltalake import DeltaTable

    if not (wh / table / "_delta_log").exists():
        return None
    return int(DeltaTable(str(wh / table)).version())


def _published_partitions(wh: Path, table: str) -> set[str]:
    """The partitions the table's current Delta version has files in."""
    from deltalake import DeltaTable

    return {f"impression_date={p['impression_date']}" for p in DeltaTable(str(wh / table)).partitions()}


def _kill_at(args: list[str], marker: str, timeout_s: float = 240) -> list[str]:
    """Start `tilewise ARGS`, kill -9 it as soon as it prints a line containing `marker`."""
    proc = subprocess.Popen([*TILEWISE, *args], cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(timeout_s, proc.kill)  # a hung run fails the test instead of hanging it
    watchdog.start()
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if marker in line:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        proc.wait(timeout=60)
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL and any(marker in x for x in lines), (
        f"the run ended (exit {proc.returncode}) before printing {marker!r}:\n{''.join(lines)[-3000:]}"
    )
    return lines


@pytest.fixture(scope="module")
def built(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Block tables for both feature sets, and the training table one clean run writes for 01-01..01-03."""
    base = tmp_path_factory.mktemp("built")
    blocks_wh, clean_wh = base / "blocks", base / "clean"
    res = tilewise("backfill", "--start", "2026-01-01", "--end", "2026-01-03", "--feature-set", "user_activity",
                   "--feature-set", "item_popularity", "--quiet", *_common(blocks_wh, demo_data))
    assert res.returncode == 0, res.stderr[-3000:]
    shutil.copytree(blocks_wh / "blocks", clean_wh / "blocks")
    res = tilewise("training-set", "engagement", "--start", "2026-01-01", "--end", "2026-01-03", *CUTOFF, "--quiet",
                   *_common(clean_wh, demo_data))
    assert res.returncode == 0, res.stderr[-3000:]
    return {"blocks": blocks_wh, "clean": clean_wh}


# -- 1. kill -9 during training-set generation ---------------------------------------------------
@pytest.mark.parametrize(
    "marker",
    [
        # After the output is staged and while it is validated: strictly before the publish.
        f"validate {TRAINING}",
        # As the commit starts: the kill lands before or after the single commit, never inside it.
        f"engagement: publish {TRAINING} ...",
    ],
    ids=["while-validating", "while-publishing"],
)
def test_kill_9_mid_training_set_publishes_nothing_and_a_rerun_converges(
    built: dict[str, Path], demo_data: Path, tmp_path: Path, marker: str
) -> None:
    wh = tmp_path / "wh"
    shutil.copytree(built["blocks"] / "blocks", wh / "blocks")
    common = _common(wh, demo_data)
    first = tilewise("training-set", "engagement", "--start", "2026-01-01", "--end", "2026-01-02", *CUTOFF, "--quiet", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    before = table_content(wh, TRAINING)
    assert _delta_version(wh, TRAINING) == 0 and _published_partitions(wh, TRAINING) == {"impression_date=2026-01-01"}

    _kill_at(["training-set", "engagement", "--start", "2026-01-01", "--end", "2026-01-03", *CUTOFF, *common], marker)

    killed = [d for d in (wh / "_runs").glob("*-training-set-*") if d.is_dir() and not d.with_suffix(".json").exists()]
    assert len(killed) == 1, "the killed run left its folder and no manifest"
    if "validate" in marker:
        assert any((killed[0] / "staged" / TRAINING).rglob("*.parquet")), "killed with its output staged"
    clean = table_content(built["clean"], TRAINING)
    version = _delta_version(wh, TRAINING)
    # The table is at a committed version, whole: the old one, or (kill after the commit) the new one.
    if "validate" in marker or version == 0:
        assert version == 0, "nothing was published"
        assert table_content(wh, TRAINING) == before
        assert _published_partitions(wh, TRAINING) == {"impression_date=2026-01-01"}, "no half-published partition"
    else:
        assert version == 1 and table_content(wh, TRAINING) == clean

    # The lock died with the process: the re-run does not wait, and converges.
    again = tilewise("training-set", "engagement", "--start", "2026-01-01", "--end", "2026-01-03", *CUTOFF, *common)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "waiting for table" not in again.stderr
    assert table_content(wh, TRAINING) == clean
    assert _published_partitions(wh, TRAINING) == {"impression_date=2026-01-01", "impression_date=2026-01-02"}


# -- 2. two backfills of one table at once -------------------------------------------------------
def _start_backfill(wh: Path, data: Path, start: str, end: str, log: Path) -> subprocess.Popen:
    with log.open("w") as err:
        return subprocess.Popen(
            [*TILEWISE, "backfill", "--start", start, "--end", end, "--feature-set", "user_activity", *_common(wh, data)],
            cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=err, text=True,
        )


@pytest.mark.parametrize(
    ("range_a", "range_b", "clean_range"),
    [
        (("2026-01-01", "2026-01-03"), ("2026-01-01", "2026-01-03"), ("2026-01-01", "2026-01-03")),
        # Disjoint block ranges (lateness 1d: B recomputes from 01-02): without the lock, Sail's
        # second commit would drop the first one's blocks (a lost update).
        (("2026-01-01", "2026-01-02"), ("2026-01-03", "2026-01-04"), ("2026-01-01", "2026-01-04")),
    ],
    ids=["same-range", "different-ranges"],
)
def test_two_backfills_at_once_run_one_after_the_other_and_lose_nothing(
    demo_data: Path, tmp_path: Path, range_a: tuple[str, str], range_b: tuple[str, str], clean_range: tuple[str, str]
) -> None:
    wh = tmp_path / "wh"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    # Hold the table while both start, so both really are at the lock at the same time.
    with table_lock(wh / "_locks", BLOCKS, timeout_s=5):
        procs = [_start_backfill(wh, demo_data, *rng, log) for rng, log in zip((range_a, range_b), logs)]
        try:
            _wait_for("both backfills to wait for the table",
                      lambda: all(f"waiting for table {BLOCKS}" in log.read_text() for log in logs)
                      or any(p.poll() is not None for p in procs))
        except BaseException:
            for p in procs:
                p.kill()
            raise
    codes = [p.wait(timeout=300) for p in procs]
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n-----\n".join(t[-3000:] for t in texts)
    assert all(f"waiting for table {BLOCKS}: held by pid" in t for t in texts)

    runs = manifests(wh, "backfill")
    assert sorted(r["outputs"][BLOCKS]["version"] for r in runs) == [0, 1], "sequential versions"
    from deltalake import DeltaTable

    history = DeltaTable(str(wh / BLOCKS)).history()
    assert sorted(h["version"] for h in history) == [0, 1]
    blocks = DeltaTable(str(wh / BLOCKS)).to_pandas()
    days = set(blocks.loc[blocks["block_size"] == 300, "block_date"].astype(str))
    assert days == {"2026-01-01", "2026-01-02"}, "both runs' blocks are in the table"

    clean = tmp_path / "clean"
    res = tilewise("backfill", "--start", clean_range[0], "--end", clean_range[1], "--feature-set", "user_activity",
                   "--quiet", *_common(clean, demo_data))
    assert res.returncode == 0, res.stderr[-3000:]
    assert table_content(wh, BLOCKS) == table_content(clean, BLOCKS)


def test_a_backfill_that_cannot_get_the_table_fails_cleanly_with_table_busy(demo_data: Path, tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    with table_lock(wh / "_locks", BLOCKS, timeout_s=5):
        res = tilewise("backfill", "--start", "2026-01-01", "--end", "2026-01-02", "--feature-set", "user_activity",
                       "--set", "lock_timeout_s=1", *_common(wh, demo_data))
    assert res.returncode == 3, res.stderr[-3000:]  # retryable
    assert f"table {BLOCKS} is being written by another run (pid" in res.stderr
    assert "gave up after 1s" in res.stderr and "Traceback" not in res.stderr
    assert _delta_version(wh, BLOCKS) is None, "nothing was written"
    [run] = manifests(wh, "backfill")
    assert run["status"] == "failed" and "being written by another run" in run["error"]


# -- 3. a write failing half-way, and a process dying at the Parquet commit point -----------------
PRED = "day >= DATE'2026-01-01' AND day < DATE'2026-01-04'"


def _three_days(spark, v: int):  # type: ignore[no-untyped-def]
    return spark.sql(f"SELECT id, date_add(DATE'2026-01-01', CAST(id % 3 AS INT)) AS day, {v}L AS v FROM range(30)")


def _rows(warehouse, table: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    return sorted((r["id"], str(r["day"]), r["v"]) for r in warehouse.read(table).collect())


def test_a_write_failing_mid_publish_leaves_the_previous_version(engine, warehouse) -> None:  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    spark = engine.spark
    table = "training/faulty"
    warehouse.replace_range(table, _three_days(spark, 1), PRED, ["day"])
    before = _rows(warehouse, table)
    # One of the three partitions fails while being written: the others' tasks may have written files.
    failing = _three_days(spark, 2).withColumn(
        "v", F.when(F.col("day") == F.lit("2026-01-03").cast("date"), F.raise_error(F.lit("injected write failure")))
        .otherwise(F.col("v"))
    )
    with pytest.raises(Exception, match="injected write failure"):
        warehouse.replace_range(table, failing, PRED, ["day"])
    assert warehouse.version(table) == 0
    assert _rows(warehouse, table) == before, "readers see the previous version whole"
    result = warehouse.replace_range(table, _three_days(spark, 3), PRED, ["day"])
    assert result.version == 1
    assert _rows(warehouse, table) == [(i, r[1], 3) for i, r in enumerate(before)]


_DIE_AT_COMMIT = """
import os, signal, sys
from deltalake import DeltaTable
from pyspark.sql import functions as F
from spark_jobs.engine.profile import Profile
from spark_jobs.engine.session import start_engine
from spark_jobs.storage.tables import Warehouse

profile = Profile(file="test", engine="spark", warehouse=sys.argv[1], master="local[1]",
                  spark={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"})
engine = start_engine(profile)
wh = Warehouse(engine.spark, profile.warehouse_path, engine.writer, lock_timeout_s=10)
df = engine.spark.sql("SELECT id, date_add(DATE'2026-01-01', CAST(id % 3 AS INT)) AS day, 1L AS v FROM range(30)")
wh.replace_range("training/t", df, sys.argv[2], ["day"])
print("v0 committed", flush=True)
# Die exactly at the commit point: the new data files are in the table's folders, the Delta
# commit is not made yet.
DeltaTable.create_write_transaction = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
wh.replace_range("training/t", df.withColumn("v", F.lit(2)), sys.argv[2], ["day"])
print("not reached", flush=True)
"""


def test_kill_9_between_data_files_and_delta_commit_leaves_invisible_orphans(spark_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Classic Spark without the delta-spark jars: a kill -9 right before delta-rs commits."""
    from deltalake import DeltaTable

    from spark_jobs.storage.tables import Warehouse

    root = tmp_path / "wh"
    res = subprocess.run([sys.executable, "-c", _DIE_AT_COMMIT, str(root), PRED], cwd=REPO, env=cli_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stdout + res.stderr[-3000:]
    assert "v0 committed" in res.stdout and "not reached" not in res.stdout
    table = root / "training" / "t"
    committed = {Path(u).resolve() for u in DeltaTable(str(table)).file_uris()}
    on_disk = {p.resolve() for p in table.rglob("*.parquet")}
    assert len(committed) >= 3 and len(on_disk - committed) >= 3, "all data files were written, none committed"

    spark_engine.activate()
    wh = Warehouse(spark_engine.spark, root, spark_engine.writer, lock_timeout_s=10)  # the dead writer's lock is gone
    assert wh.version("training/t") == 0
    assert {r["v"] for r in wh.read("training/t").collect()} == {1}, "the orphans' rows are not visible"
    result = wh.replace_range("training/t", _three_days(spark_engine.spark, 3), PRED, ["day"])
    assert result.version == 1
    assert sorted(r["v"] for r in wh.read("training/t").collect()) == [3] * 30
    assert not {Path(u).resolve() for u in DeltaTable(str(table)).file_uris()} & (on_disk - committed)


def _rival(monkeypatch: pytest.MonkeyPatch, commits: int) -> list[int]:
    """Make a writer that bypasses the lock append one row just before each of our next `commits`
    delta-rs commits (so each of them is stale). Returns the versions the rival made."""
    from deltalake import DeltaTable, write_deltalake

    from spark_jobs.storage import tables

    made: list[int] = []
    real = DeltaTable.create_write_transaction

    def rival_commits_first(self, *a, **k):  # type: ignore[no-untyped-def]
        if len(made) < commits:
            rows = DeltaTable(self.table_uri).to_pyarrow_table().slice(0, 1)
            write_deltalake(self.table_uri, rows, mode="append")
            made.append(DeltaTable(self.table_uri).version())
        return real(self, *a, **k)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", rival_commits_first)
    monkeypatch.setitem(tables.retry_conflicts.__kwdefaults__, "backoff_s", 0.0)
    return made


def test_delta_rs_commit_racing_a_writer_without_the_lock_is_retried_from_a_fresh_snapshot(
    spark_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from spark_jobs.storage.tables import Warehouse

    spark_engine.activate()
    wh = Warehouse(spark_engine.spark, tmp_path / "wh", spark_engine.writer, lock_timeout_s=10)
    wh.replace_range("training/t", _three_days(spark_engine.spark, 1), PRED, ["day"])
    made = _rival(monkeypatch, 1)
    result = wh.replace_range("training/t", _three_days(spark_engine.spark, 2), PRED, ["day"])
    assert made == [1] and result.version == 2, "the rival's commit stands; ours came after it"
    assert _rows(wh, "training/t") == [(i, r[1], 2) for i, r in enumerate(_rows(wh, "training/t"))]
    assert len(_rows(wh, "training/t")) == 30, "the rival's row in the range was replaced, as a re-run would"


def test_delta_rs_commit_conflicting_on_every_attempt_fails_with_write_conflict(
    spark_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from spark_jobs.storage.tables import COMMIT_ATTEMPTS, Warehouse, WriteConflict

    spark_engine.activate()
    wh = Warehouse(spark_engine.spark, tmp_path / "wh", spark_engine.writer, lock_timeout_s=10)
    wh.replace_range("training/t", _three_days(spark_engine.spark, 1), PRED, ["day"])
    made = _rival(monkeypatch, COMMIT_ATTEMPTS)
    with pytest.raises(WriteConflict, match="CommitFailedError") as info:
        wh.replace_range("training/t", _three_days(spark_engine.spark, 2), PRED, ["day"])
    assert info.value.exit_code == 3
    assert made == [1, 2, 3] and wh.version("training/t") == 3, "only the rival's commits landed"
    assert {r["v"] for r in wh.read("training/t").collect()} == {1}, "nothing of this run was published"
