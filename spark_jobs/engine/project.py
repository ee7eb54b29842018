"""Where a command finds its project, definitions and profile: flags, then environment, then the
folders around it.

Like git and dbt, tilewise looks for its project from the current folder upward: the nearest
folder holding `feature_defs/` is the project. `--defs DIR` (or `TILEWISE_DEFS`) names the
definitions folder instead, and its parent is then the project (where `sql/` is read from too).
The profile is `--profile FILE`, else `TILEWISE_PROFILE`, else the project's `conf/local.yaml`
if there is one, else the built-in defaults (Sail, Delta). Paths written on the command line or
in the environment are relative to the current folder, as in any shell command; the relative
`warehouse` and `data_root` written in a profile are relative to the project, so a scheduler can
start a command from any folder and the tables land in the same place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROFILE_ENV = "TILEWISE_PROFILE"
DEFS_ENV = "TILEWISE_DEFS"
DEFS_DIR = "feature_defs"
PROJECT_PROFILE = Path("conf") / "local.yaml"


@dataclass(frozen=True)
class Project:
    """A command's project folder, definitions folder and profile file."""

    root: Path  # relative paths in the profile start here (the current folder when no project was found)
    defs: Path
    profile: Path | None  # None: the built-in defaults
    profile_required: bool  # named by a flag or the environment, so it must exist
    found: bool  # a project folder was found (or named through its definitions)

    def describe_missing_defs(self) -> str:
        """Why there are no definitions, and how to point at them."""
        if self.found:
            return f"{self.defs}: no such definitions folder"
        return (
            f"no project here: no {DEFS_DIR}/ folder in {self.root} or any folder above it; "
            f"run tilewise inside a project, or name the definitions with --defs DIR or {DEFS_ENV}=DIR"
        )


def find_project(start: Path) -> Path | None:
    """The nearest folder from `start` upward that holds `feature_defs/`."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / DEFS_DIR).is_dir():
            return folder
    return None


def locate(
    defs: str | None = None,
    profile: str | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Project:
    """The project of a command given its `--defs` and `--profile` (None when not given)."""
    here = (cwd or Path.cwd()).resolve()
    named_defs = defs or environ.get(DEFS_ENV) or None
    if named_defs:
        defs_path = _absolute(named_defs, here)
        root, found = defs_path.parent, True
    else:
        project = find_project(here)
        root, found = (project, True) if project is not None else (here, False)
        defs_path = root / DEFS_DIR
    named_profile = profile or environ.get(PROFILE_ENV) or None
    if named_profile:
        return Project(root, defs_path, _absolute(named_profile, here), True, found)
    default = root / PROJECT_PROFILE
    return Project(root, defs_path, default if default.is_file() else None, False, found)


def _absolute(path: str, base: Path) -> Path:
    return (base / Path(path).expanduser()).resolve()
