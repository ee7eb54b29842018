"""`python -m spark_jobs.bench --worker SPEC`: the bench's worker process (use `tilewise bench`)."""

from __future__ import annotations

import sys

from spark_jobs.bench.tasks import worker_main

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        raise SystemExit(worker_main(sys.argv[2]))
    raise SystemExit("usage: python -m spark_jobs.bench --worker SPEC (use `tilewise bench`)")
