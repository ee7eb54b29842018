"""The one place that makes sessions: Sail in process, or classic Spark (local or spark-submit).

Both engines run in UTC (the Connect client turns naive datetimes into the local zone, and block
boundaries are epoch-aligned), and Sail's memory pool is bounded from the profile because the
server lives inside this Python process.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from spark_jobs.engine.profile import Profile
from spark_jobs.storage.tables import DELTA_RS_WRITER, ENGINE_WRITER

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
_CONNECT_ENV = "SPARK_CONNECT_MODE_ENABLED"
# Sail logs through Rust's `log` (RUST_LOG). Its actor runtime warns "aborting N task(s) for
# SessionManagerActor" at every clean shutdown: the session manager's pending timers (idle-session
# expiry) are dropped with the server. That target's errors still show; a RUST_LOG set by the
# user wins.
SAIL_LOG = "warn,sail_common::actor=error"


@dataclass
class Engine:
    """A live session plus what the jobs need to know about the engine behind it."""

    name: str  # "sail" | "spark"
    spark: SparkSession
    writer: str  # how Delta commits are made: by the engine, or by delta-rs (`storage.tables`)
    profile: Profile
    _server: Any = None

    @property
    def supports_bucketing(self) -> bool:
        return self.name == "spark"

    @property
    def table_format(self) -> str:
        return "delta"  # every engine and profile writes Delta

    @property
    def delta_writer(self) -> str:
        """Who writes the Delta commits, for messages: sail, delta-spark or delta-rs."""
        if self.writer == DELTA_RS_WRITER:
            return "delta-rs"
        return "sail" if self.name == "sail" else "delta-spark"

    def activate(self) -> None:
        """Make `pyspark.sql.functions` build Columns for this engine.

        PySpark picks Connect or classic Columns from one process-wide environment variable, so a
        process holding both engines (the test suite) switches it before using one.
        """
        if self.name == "sail":
            os.environ[_CONNECT_ENV] = "1"
        else:
            os.environ.pop(_CONNECT_ENV, None)

    def stop(self) -> None:
        self.spark.stop()
        if self._server is not None:
            self._server.stop()


def use_utc() -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()


def start_engine(profile: Profile) -> Engine:
    use_utc()
    if profile.table_format == "parquet":
        print(
            f"tilewise: warning: {profile.file}: table_format: parquet is obsolete: every engine writes Delta "
            "tables (classic Spark without the delta-spark jars commits its files with the deltalake package)",
            file=sys.stderr,
            flush=True,
        )
    engine = _start_sail(profile) if profile.engine == "sail" else _start_spark(profile)
    engine.spark.conf.set("spark.sql.session.timeZone", "UTC")
    return engine


@contextmanager
def open_engine(profile: Profile) -> Iterator[Engine]:
    engine = start_engine(profile)
    try:
        yield engine
    finally:
        engine.stop()


def _start_sail(profile: Profile) -> Engine:
    os.environ.setdefault("RUST_LOG", SAIL_LOG)
    if profile.spark:
        print(
            f"tilewise: warning: Sail ignores Spark confs; not applied: {', '.join(sorted(profile.spark))} "
            f"(from {profile.file} or --set; they apply with engine: spark)",
            file=sys.stderr,
            flush=True,
        )
    # Sail reads its configuration from the environment when the server starts.
    os.environ["SAIL_RUNTIME__MEMORY_POOL__TYPE"] = "fair"
    os.environ["SAIL_RUNTIME__MEMORY_POOL__FAIR__MAX_SIZE"] = str(profile.sail_memory_limit)
    if profile.sail_parallelism > 0:
        os.environ["SAIL_EXECUTION__DEFAULT_PARALLELISM"] = str(profile.sail_parallelism)
    from pysail.spark import SparkConnectServer

    from spark_jobs.kernels.memory import reuse_freed_memory

    # Sail runs the sweep's Python in its own threads, in this process: set the allocators
    # before any of them runs Python (a thread keeps the glibc arena it first gets).
    reuse_freed_memory()
    server = SparkConnectServer("127.0.0.1", 0)
    server.start(background=True)
    _, port = server.listening_address
    spark = SparkSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()
    engine = Engine("sail", spark, ENGINE_WRITER, profile, server)
    engine.activate()
    return engine


def delta_jars_present(confs: dict[str, str]) -> bool:
    """Is delta-spark on the JVM classpath (cluster jars, --jars or --packages)?"""
    listed = " ".join(confs.get(k, "") for k in ("spark.jars", "spark.jars.packages", "spark.driver.extraClassPath"))
    if "delta-spark" in listed or "io.delta" in listed:
        return True
    import pyspark

    homes = [os.environ.get("SPARK_HOME", ""), os.path.dirname(pyspark.__file__)]
    return any(glob.glob(os.path.join(h, "jars", "delta-spark*.jar")) for h in homes if h)


def _start_spark(profile: Profile) -> Engine:
    os.environ.pop(_CONNECT_ENV, None)
    # Python workers (a few Great Expectations checks use UDFs) must run this interpreter.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    builder = SparkSession.builder.appName("tilewise")
    confs = dict(profile.spark)
    submitted = _submit_confs()
    # A master given to spark-submit (--master) wins over the profile's: it is the one thing a
    # submission always says, and a builder master would silently override it.
    if active is None and profile.master and "spark.master" not in submitted:
        builder = builder.master(profile.master)
    confs.setdefault("spark.sql.session.timeZone", "UTC")
    confs.setdefault("spark.ui.showConsoleProgress", "false")
    confs.setdefault("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
    confs.setdefault("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
    # Bucketed intermediates (saveAsTable) live in the session catalog, under the warehouse.
    confs.setdefault("spark.sql.warehouse.dir", str(profile.warehouse_path / "_tmp" / "spark-tables"))
    # Files classic Spark writes for delta-rs to commit carry UTC instants in microseconds, as Delta
    # readers expect (Spark's default INT96 reads back as naive times in pandas).
    confs.setdefault("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    jars = delta_jars_present({**submitted, **confs})
    if jars:
        confs["spark.sql.extensions"] = DELTA_EXTENSION
        confs["spark.sql.catalog.spark_catalog"] = DELTA_CATALOG
    for key, value in confs.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if jars:
        import delta.exceptions  # noqa: F401  (commit conflicts then arrive as delta.exceptions classes)
    return Engine("spark", spark, ENGINE_WRITER if jars else DELTA_RS_WRITER, profile)


def _submit_confs() -> dict[str, str]:
    """Confs given to spark-submit (--master, --jars, --packages, --conf), read from its driver JVM.

    Under spark-submit that JVM already runs (PYSPARK_GATEWAY_PORT) and holds them as system
    properties; SparkConf only sees them once connected to it. Anywhere else there is no JVM yet,
    and starting one here would lose the profile's launch-time confs (driver memory, Java
    options), so there is nothing to read.
    """
    from pyspark import SparkConf, SparkContext

    if SparkContext._jvm is None:
        if "PYSPARK_GATEWAY_PORT" not in os.environ:
            return {}
        SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())
