"""One session-scoped engine per kind; tests that take `engine` run on Sail and on classic Spark."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["TZ"] = "UTC"
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

ENGINES = ("sail", "spark")


def _profile(kind: str, root: Path):  # type: ignore[no-untyped-def]
    from spark_jobs.engine.profile import Profile

    if kind == "sail":
        return Profile(file="tests", engine="sail", table_format="delta", warehouse=str(root), sail_memory_limit=4 << 30)
    return Profile(
        file="tests",
        engine="spark",
        table_format="delta",
        warehouse=str(root),
        master="local[2]",
        spark={
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "2g",
            "spark.sql.adaptive.enabled": "true",
        },
    )


def _start(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator:  # type: ignore[type-arg]
    from spark_jobs.engine.session import start_engine

    engine = start_engine(_profile(kind, tmp_path_factory.mktemp(f"{kind}-session")))
    yield engine
    engine.activate()
    engine.stop()


@pytest.fixture(scope="session")
def sail_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator:  # type: ignore[type-arg]
    yield from _start("sail", tmp_path_factory)


@pytest.fixture(scope="session")
def spark_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator:  # type: ignore[type-arg]
    yield from _start("spark", tmp_path_factory)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    eng = request.getfixturevalue(f"{request.param}_engine")
    eng.activate()
    return eng


@pytest.fixture
def warehouse(engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    from spark_jobs.storage.tables import Warehouse

    return Warehouse(engine.spark, tmp_path / "warehouse", engine.writer, lock_timeout_s=30)
