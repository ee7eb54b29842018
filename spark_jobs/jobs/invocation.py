"""`Invocation`: what every `tilewise` command gets, and so the one argument of every command's task.

`cli.py` builds it (parsed options, project, profile, the definitions if the command loads them)
and hands it to the command's task: its own `_check`, the engine commands' `_run_job`, or a
files-only job's `main(inv) -> exit code` here in `jobs/`. It lives in `jobs/`, not in `cli.py`,
so that jobs never import the command line (`cli` -> `jobs`, never back).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spark_jobs.defs.models import Definitions
    from spark_jobs.engine.profile import Profile
    from spark_jobs.engine.project import Project


@dataclass(frozen=True)
class Invocation:
    """What every command gets: its parsed options, the project, the profile, and the definitions
    (loaded for the commands that need them; `Command.needs`)."""

    args: argparse.Namespace
    project: Project
    profile: Profile
    loaded: Definitions | None = None

    @property
    def defs(self) -> Definitions:
        assert self.loaded is not None, "a command that reads the definitions says so in Command.needs"
        return self.loaded

    def plain_args(self) -> dict:
        """The options as a run manifest records them."""
        return plain_args(self.args)


def plain_args(args: argparse.Namespace) -> dict:
    """The options with dates, times and paths as strings (JSON-ready)."""
    return {k: (str(v) if isinstance(v, (date, datetime, Path)) else v) for k, v in vars(args).items()}
