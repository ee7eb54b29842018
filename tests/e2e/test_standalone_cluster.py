"""A real Spark standalone cluster (a master and two workers on 127.0.0.1, from the pip package).

The nightly backfill and a training set go through `spark-submit --master spark://...` with the
classic profile (Delta committed with delta-rs); one worker is killed (kill -9 of its process group: the worker and its
executor, as when a node dies) while the backfill has run tasks on both executors. Spark must
reschedule the lost work on the surviving worker, and the tables must equal the Sail run's row
for row. Everything started here is killed in the fixture's finalizer, also on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, cli_env, table_content, tilewise

BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="classic Spark needs Java"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)
    except (OSError, ValueError):
        return None


def _poll(what: str, probe: Callable[[], Any], timeout_s: float, alive: Callable[[], None] = lambda: None) -> Any:
    """`probe()` until it returns something truthy; `alive()` raises if what we wait on has died."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive()
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.2)


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


@dataclass
class Node:
    name: str
    proc: subprocess.Popen
    log: Path
    webui: int

    def kill(self) -> None:
        """kill -9 the whole process group: the daemon and every executor it launched."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


@dataclass
class Cluster:
    url: str
    webui: int
    env: dict[str, str]
    master: Node
    workers: list[Node] = field(default_factory=list)

    def state(self) -> Any:
        return _get_json(f"http://127.0.0.1:{self.webui}/json/")


def _start(name: str, args: list[str], env: dict[str, str], log: Path, webui: int) -> Node:
    with log.open("w") as out:
        proc = subprocess.Popen([str(BIN / "spark-class"), *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return Node(name, proc, log, webui)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    conf_dir = tmp_path / "spark-conf"  # empty: nothing from a machine-wide spark-defaults
    conf_dir.mkdir()
    env = cli_env(
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_CONF_DIR=str(conf_dir),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_DAEMON_MEMORY="256m",
        SPARK_NO_DAEMONIZE="1",
        # No fixed-port REST submission server (6066) to collide with another cluster on the host.
        SPARK_MASTER_OPTS="-Dspark.master.rest.enabled=false",
        SPARK_LOCAL_DIRS=str(tmp_path / "driver-local"),  # the workers get their own below
    )
    port, webui = _free_port(), _free_port()
    master = _start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                               "--webui-port", str(webui)], env, tmp_path / "master.log", webui)
    c = Cluster(f"spark://127.0.0.1:{port}", webui, env, master)
    try:
        for i in (1, 2):
            work = tmp_path / f"worker{i}"
            (work / "local").mkdir(parents=True)
            wenv = {**env, "SPARK_WORKER_DIR": str(work / "work"), "SPARK_LOCAL_DIRS": str(work / "local")}
            w_ui = _free_port()
            c.workers.append(_start(
                f"worker{i}",
                ["org.apache.spark.deploy.worker.Worker", c.url, "--host", "127.0.0.1", "--port", str(_free_port()),
                 "--webui-port", str(w_ui), "--cores", "1", "--memory", "1g", "--work-dir", str(work / "work")],
                wenv, work / "worker.log", w_ui,
            ))

        def daemons_alive() -> None:
            for node in (master, *c.workers):
                if node.proc.poll() is not None:
                    raise AssertionError(f"{node.name} exited {node.proc.returncode}:\n{_tail(node.log)}")

        _poll("both workers to register with the master",
              lambda: len([w for w in (c.state() or {}).get("workers", []) if w.get("state") == "ALIVE"]) == 2,
              timeout_s=120, alive=daemons_alive)
        yield c
    finally:
        for node in (*c.workers, master):
            node.kill()


def _submit(cluster: Cluster, script: str, args: list[str], log: Path, ui_port: int) -> subprocess.Popen:
    cmd = [
        str(BIN / "spark-submit"), "--master", cluster.url,
        "--total-executor-cores", "2", "--executor-cores", "1", "--executor-memory", "512m", "--driver-memory", "1g",
        "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
        "--conf", f"spark.ui.port={ui_port}", "--conf", "spark.port.maxRetries=50",
        "--conf", f"spark.pyspark.python={sys.executable}",
        # Losing an executor to a dead node does not count against a task; other failures get room.
        "--conf", "spark.task.maxFailures=8",
        f"spark_jobs/{script}", *args,
    ]
    with log.open("w") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=cluster.env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _wait(proc: subprocess.Popen, log: Path, what: str, timeout_s: float = 240) -> None:
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"{what} did not finish in {timeout_s:.0f}s:\n{_tail(log)}") from None
    assert code == 0, f"{what} exited {code}:\n{_tail(log, 6000)}"


def _executors_with_tasks(ui_port: int) -> list[dict[str, Any]]:
    """The application's executors once both have run tasks; else an empty list."""
    apps = _get_json(f"http://127.0.0.1:{ui_port}/api/v1/applications") or []
    if not apps:
        return []
    execs = _get_json(f"http://127.0.0.1:{ui_port}/api/v1/applications/{apps[0]['id']}/executors") or []
    execs = [e for e in execs if e.get("id") != "driver" and e.get("isActive")]
    return execs if len(execs) == 2 and all(e.get("totalTasks", 0) > 0 for e in execs) else []


def _worker_of(cluster: Cluster, executor_id: str) -> Node:
    for w in cluster.workers:
        state = _get_json(f"http://127.0.0.1:{w.webui}/json/") or {}
        if any(str(e.get("id")) == executor_id for e in state.get("executors", [])):
            return w
    raise AssertionError(f"no worker runs executor {executor_id}")


def test_backfill_and_training_set_survive_a_worker_killed_mid_job_and_match_sail(
    cluster: Cluster, tmp_path: Path
) -> None:
    from spark_jobs.demo.synthetic import generate

    data = tmp_path / "data"
    generate(data / "demo", days=2, events_per_day=3_000, impressions_per_day=600)
    # Small data: relax the demo's own thresholds (the built-in checks still run). One feature set
    # (the one with both sketches) keeps the whole test within CI's few minutes on 2 cores.
    defs = tmp_path / "feature_defs"
    defs.mkdir()
    text = (REPO / "feature_defs" / "demo.yaml").read_text()
    item_logged = "        item_views_1d: item_views_1d\n"  # a logged value of the dropped feature set
    assert "      - item_popularity.*\n" in text and item_logged in text
    text = text.replace("      - item_popularity.*\n", "").replace(item_logged, "").replace("min_rows: 1000", "min_rows: 10")
    (defs / "demo.yaml").write_text(text.replace("dur_avg_1d: 0.2", "dur_avg_1d: 0.9"))
    shutil.copytree(REPO / "sql", tmp_path / "sql")
    wh, sail_wh = tmp_path / "cluster-wh", tmp_path / "sail-wh"
    # The local profile (master local[2]): spark-submit's --master must win over it.
    classic = ["--conf", "conf/spark-local.yaml", "--defs", str(defs), "--set", f"warehouse={wh}",
               "--set", f"data_root={data}", "--set", "spark.spark.sql.shuffle.partitions=2", "--quiet"]
    backfill = ["--start", "2026-01-01", "--end", "2026-01-03", "--feature-set", "user_activity"]
    training = ["engagement", "--start", "2026-01-01", "--end", "2026-01-03"]

    log, ui = tmp_path / "backfill.log", _free_port()
    proc = _submit(cluster, "backfill.py", [*backfill, *classic], log, ui)
    try:
        def running() -> None:
            if proc.poll() is not None:
                raise AssertionError(f"the backfill ended (exit {proc.returncode}) before a worker was killed:\n{_tail(log)}")

        execs = _poll("the backfill to run tasks on both workers' executors", lambda: _executors_with_tasks(ui),
                      timeout_s=150, alive=running)
        victim_exec = max(execs, key=lambda e: e.get("activeTasks", 0))
        victim = _worker_of(cluster, str(victim_exec["id"]))
        victim.kill()
        _poll("the master to see the worker gone",
              lambda: not any(w.get("state") == "ALIVE" and str(w.get("webuiaddress", "")).endswith(f":{victim.webui}")
                              for w in (cluster.state() or {}).get("workers", [])),
              timeout_s=120)
        _wait(proc, log, "the backfill after losing a worker")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text(errors="replace")
    assert "Lost executor" in out or "lost executor" in out.lower(), "the driver saw the executor die"
    alive = [w for w in (cluster.state() or {}).get("workers", []) if w.get("state") == "ALIVE"]
    assert len(alive) == 1

    log = tmp_path / "training.log"
    _wait(_submit(cluster, "training_set.py", [*training, *classic], log, _free_port()), log, "the training set")

    sail = ["--defs", str(defs), "--set", f"warehouse={sail_wh}", "--set", f"data_root={data}", "--quiet"]
    for args in (["backfill", *backfill], ["training-set", *training]):
        res = tilewise(*args, *sail, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
    for table in ("blocks/user_activity", "training/engagement"):
        got, want = table_content(wh, table), table_content(sail_wh, table)
        assert len(want) > 0 and got == want, table
