"""spark-submit entry point: `spark-submit spark_jobs/training_set.py ARGS` = `tilewise training-set ARGS`."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # spark-submit puts this file's folder first on sys.path; the package is imported as installed.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    from spark_jobs.cli import main

    raise SystemExit(main(["training-set", *sys.argv[1:]]))
