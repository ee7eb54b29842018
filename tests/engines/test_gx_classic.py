"""Great Expectations wrapper on classic Spark (local[1], JVM): same suites, same verdicts.

Runs in the same pytest process as the Sail tests. A Connect session (``builder.remote``) sets
``SPARK_CONNECT_MODE_ENABLED``, after which ``SparkSession.builder`` hands out Connect sessions
only; the fixture hides that variable (and ``SPARK_REMOTE``) while the classic session lives and
restores it afterwards, so module order does not matter.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

os.environ["TZ"] = "UTC"
time.tzset()

from spark_jobs.quality.gx import validate_dataframe  # noqa: E402

try:  # tests/ as a package (or --import-mode=importlib with rootdir on sys.path) ...
    from tests.engines.test_gx import FAILURES, _df, _failed, _rows, _suite
except ImportError:  # ... or pytest's default "prepend" import of a folder without __init__.py
    from test_gx import FAILURES, _df, _failed, _rows, _suite  # type: ignore[no-redef]

# Slow: a JVM start plus a few seconds per validation on local classic Spark.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="classic Spark needs Java"),
]



@pytest.fixture
def spark(spark_engine):  # type: ignore[no-untyped-def]
    spark_engine.activate()
    return spark_engine.spark


def test_classic_dataframe_passes(spark, tmp_path):
    df = _df(spark, _rows())
    assert type(df).__module__ == "pyspark.sql.classic.dataframe"
    report = validate_dataframe(df, _suite(), suite_name="classic_ok", report_dir=tmp_path)
    assert report.success, report.summary_lines()
    assert report.report_path is not None and "classic_ok" in report.report_path.read_text()


def test_classic_builtin_checks_fail_like_sail(spark, tmp_path):
    # Every bad row of the Sail tests at once (they touch distinct cells): one validation
    # instead of seven, since each costs seconds on local classic Spark.
    rows = _rows()
    for _, mutate, _ in FAILURES:
        mutate(rows)
    report = validate_dataframe(
        _df(spark, rows), _suite(), suite_name="classic_bad", report_dir=tmp_path
    )
    assert not report.success
    assert _failed(report) == {expected for _, _, expected in FAILURES}
