"""The errors tilewise raises on purpose, one per stage, each with the exit code the CLI uses.

The exit codes are what a scheduler acts on:
0 done; 1 validation failed (nothing published); 2 bad definitions, arguments or input data (fix
them, then re-run); 3 the table is busy or a commit conflicted (nothing published: retry later);
4 anything unexpected (a bug or an environment fault: the run's manifest holds the traceback).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

EXIT_OK = 0
EXIT_VALIDATION = 1
EXIT_INPUT = 2
EXIT_RETRY = 3
EXIT_INTERNAL = 4


class TilewiseError(Exception):
    """A failure tilewise noticed but no stage owns (e.g. an engine answer nobody asked for): a bug."""

    exit_code = EXIT_INTERNAL


class DefinitionError(TilewiseError):
    """Bad YAML or definitions; the message is ready to show, one line per problem."""

    exit_code = EXIT_INPUT

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems is not None else [message]

    @classmethod
    def collected(cls, problems: Sequence[str]) -> DefinitionError:
        return cls("\n".join(problems), problems)


class InputDataError(TilewiseError):
    """Bad input data or command arguments."""

    exit_code = EXIT_INPUT


class ValidationFailed(TilewiseError):
    """A data-quality gate rejected a table; nothing was published."""

    exit_code = EXIT_VALIDATION


class TableBusy(TilewiseError):
    """Another run held the table's lock for longer than we were willing to wait (retry later)."""

    exit_code = EXIT_RETRY


_MANIFEST = "tilewise_manifest"


def attach_manifest(exc: BaseException, path: Path) -> None:
    """Remember on `exc` the manifest of the run it ended, for the CLI's one-line message."""
    try:
        setattr(exc, _MANIFEST, path)
    except (AttributeError, TypeError):  # an exception class with __slots__: the summary names it
        pass


def manifest_of(exc: BaseException) -> Path | None:
    return getattr(exc, _MANIFEST, None)
