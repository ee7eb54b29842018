"""`tilewise vacuum [TABLE ...]`: delete the files no version within the retention needs.

Runs on the files, without an engine (see `storage.vacuum`): every output table of the
definitions that exists, or the tables named, then the run folders' intermediates. Each table
gets a progress line; the summary and manifest say what was deleted.
"""

from __future__ import annotations

from spark_jobs.jobs.invocation import Invocation
from spark_jobs.jobs.runner import recorded
from spark_jobs.names import output_tables
from spark_jobs.storage.manifest import Run
from spark_jobs.storage.vacuum import Freed, vacuum_runs, vacuum_table


def main(inv: Invocation) -> int:
    """The tables named (checked by the command line) or every output table, then the runs' intermediates."""
    args, profile, defs = inv.args, inv.profile, inv.defs
    tables = list(dict.fromkeys(args.table)) or output_tables(defs)
    root = profile.warehouse_path
    run = Run("vacuum", root, args=inv.plain_args(), quiet=args.quiet)
    run.engine = "none (files only)"
    verb = "would delete" if args.dry_run else "deleted"
    how = f"versions replaced more than {args.retain_hours:g} h ago"
    run.say(f"vacuum {root}: {how}{', dry run' if args.dry_run else ''}")
    with recorded(run, defs):
        total, missing = Freed(), []
        for table in tables:
            freed = vacuum_table(
                root, table, retain_hours=args.retain_hours, dry_run=args.dry_run,
                lock_timeout_s=profile.lock_timeout_s, on_wait=run.say, run_id=run.run_id,
            )
            if freed is None:
                run.counts[table] = "does not exist"
                missing.append(table)
                continue
            run.counts[table] = {"files": freed.files, "bytes": freed.bytes}
            _report(run, table, freed, verb)
            total.add_counts(freed)
        freed = vacuum_runs(root, retain_hours=args.retain_hours, dry_run=args.dry_run)
        run.counts["_runs"] = {"files": freed.files, "bytes": freed.bytes}
        _report(run, "_runs (intermediates of old runs)", freed, verb)
        total.add_counts(freed)
        run.counts["total"] = {"files": total.files, "bytes": total.bytes, "dry_run": args.dry_run}
        if missing:
            run.notes.append(f"not built yet: {', '.join(missing)}")
        run.notes.append(f"in all: {verb} {_files(total)} ({how})")
    return 0


def _report(run: Run, what: str, freed: Freed, verb: str) -> None:
    run.say(f"{what}: {verb} {_files(freed)}")
    if freed.files:  # the summary names what had files to delete; every table is in the progress lines
        run.notes.append(f"{what}: {verb} {_files(freed)}")


def _files(freed: Freed) -> str:
    return f"{freed.files:,} files, {freed.bytes / 1e6:,.1f} MB"
