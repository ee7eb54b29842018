"""`spark-submit spark_jobs/*.py` on local[2] with the classic profile gives the Sail rows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="classic Spark needs Java"),
]


def submit(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TZ": "UTC", "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "PYSPARK_PYTHON": sys.executable}
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    cmd = [str(BIN / "spark-submit"), "--master", "local[2]", "--driver-memory", "2g", f"spark_jobs/{script}", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_spark_submit_backfill_and_training_set_match_sail(tmp_path: Path) -> None:
    from spark_jobs.demo.synthetic import generate

    data = tmp_path / "data"
    generate(data / "demo", days=2, events_per_day=4_000, impressions_per_day=800)
    spark_wh, sail_wh = tmp_path / "spark", tmp_path / "sail"
    # Small data: relax the demo's own validation thresholds (the built-in checks still run).
    defs = tmp_path / "feature_defs"
    defs.mkdir()
    text = (REPO / "feature_defs" / "demo.yaml").read_text()
    (defs / "demo.yaml").write_text(text.replace("min_rows: 1000", "min_rows: 10").replace("dur_avg_1d: 0.2", "dur_avg_1d: 0.9"))
    shutil.copytree(REPO / "sql", tmp_path / "sql")
    classic = ["--conf", "conf/spark-local.yaml", "--defs", str(defs), "--set", f"warehouse={spark_wh}",
               "--set", f"data_root={data}", "--quiet"]
    sets = ["--feature-set", "user_activity", "--feature-set", "item_popularity"]
    res = submit("backfill.py", "--start", "2026-01-01", "--end", "2026-01-03", *sets, *classic)
    assert res.returncode == 0, res.stderr[-3000:]
    res = submit("training_set.py", "engagement", "--start", "2026-01-01", "--end", "2026-01-03", "--explain", *classic)
    assert res.returncode == 0, res.stderr[-3000:]
    final_joins = res.stdout.split("== physical plan of the final joins (bucketed) ==")[1]
    assert "Exchange" not in final_joins.split("\n\n")[0], final_joins[:3000]

    env = {**os.environ, "TZ": "UTC"}
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    sail = ["--defs", str(defs), "--set", f"warehouse={sail_wh}", "--set", f"data_root={data}", "--quiet"]
    for args in (["backfill", "--start", "2026-01-01", "--end", "2026-01-03", *sets],
                 ["training-set", "engagement", "--start", "2026-01-01", "--end", "2026-01-03"]):
        res = subprocess.run([sys.executable, "-m", "spark_jobs.cli", *args, *sail], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]

    import pandas as pd
    from deltalake import DeltaTable

    # Both are Delta tables: classic Spark's files were committed with delta-rs.
    classic_df = DeltaTable(str(spark_wh / "training" / "engagement")).to_pandas()
    sail_df = DeltaTable(str(sail_wh / "training" / "engagement")).to_pandas()
    stamps = [c for c in sail_df.columns if isinstance(sail_df[c].dtype, pd.DatetimeTZDtype)]
    assert stamps and all(isinstance(classic_df[c].dtype, pd.DatetimeTZDtype) for c in stamps), "UTC instants on both"
    cols = [c for c in sail_df.columns if c != "impression_date"]
    def norm(df: pd.DataFrame) -> pd.DataFrame:
        df = df[cols].sort_values("impression_id").reset_index(drop=True)
        for c in df.columns:
            if isinstance(df[c].dtype, pd.DatetimeTZDtype):  # microseconds or nanoseconds
                df[c] = df[c].dt.tz_convert("UTC").astype("datetime64[us, UTC]")
            elif df[c].dtype == object:
                df[c] = df[c].map(lambda v: repr(v.tolist() if hasattr(v, "tolist") else v))
            elif str(df[c].dtype).startswith("datetime64"):
                df[c] = df[c].astype("datetime64[us]")
        return df

    assert len(sail_df) > 0
    pd.testing.assert_frame_equal(norm(classic_df), norm(sail_df), check_dtype=False)
