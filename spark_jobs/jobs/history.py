"""`tilewise history TABLE` and `tilewise restore TABLE --version N`: a table's versions, and
rolling one back. Files only (`storage.history`): no engine starts.

`history` prints one line per version, newest first (version, time, operation, run id, command,
rows written, validation result), or `--json`. `restore` is a run like the others: it takes the
table's lock, commits a new version equal to version N that names its own run id, and writes a
manifest whose output is that new version.
"""

from __future__ import annotations

import json
from typing import Any

from spark_jobs.jobs.invocation import Invocation
from spark_jobs.jobs.runner import recorded
from spark_jobs.storage.history import restore, table_history
from spark_jobs.storage.manifest import Run


def history_main(inv: Invocation) -> int:
    """The versions of `args.table` (a name the command line checked), newest first."""
    args = inv.args
    rows = table_history(inv.profile.warehouse_path, args.table, args.last)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"{'version':>7}  {'time (UTC)':<19}  {'operation':<13} {'command':<12} {'rows written':>12}  "
          f"{'validation':<10}  run id")
    for r in rows:
        print(line(r))
    return 0


def line(r: dict[str, Any]) -> str:
    when = (r["time"] or "?").replace("T", " ").rstrip("Z")
    rows = f"{r['rows_written']:,}" if isinstance(r["rows_written"], int) else "-"
    return (f"{r['version']:>7}  {when:<19}  {r['operation'] or '?':<13} {r['command'] or '-':<12} {rows:>12}  "
            f"{r['validation'] or '-':<10}  {r['run_id'] or '- (no run id: not written by tilewise)'}")


def restore_main(inv: Invocation) -> int:
    """A new version of `args.table` (a name the command line checked) equal to `args.version`."""
    args, profile = inv.args, inv.profile
    root = profile.warehouse_path
    run = Run("restore", root, args=inv.plain_args(), quiet=args.quiet, targets=[args.table])
    run.engine = "none (files only)"
    with recorded(run, inv.defs):
        run.say(f"restore {args.table} to version {args.version} under {root}")
        done = restore(root, args.table, args.version, run_id=run.run_id, lock_timeout_s=profile.lock_timeout_s,
                       on_wait=run.say)
        run.outputs[args.table] = {"version": done.version, "rows": done.rows, "restored_from": done.source}
        run.notes.append(f"{args.table}: version {done.version} equals version {done.source}")
        if not done.lineage_kept:
            run.notes.append(f"{args.table}: a commit after version {done.source} replaced the table (a rebuild, "
                             "a restore or a write without a run id): its lineage is dropped, the next write records it")
    return 0
