"""The errors tilewise raises on purpose, one per stage, each with the exit code the CLI uses."""

from __future__ import annotations

from collections.abc import Sequence


class TilewiseError(Exception):
    exit_code = 1


class DefinitionError(TilewiseError):
    """Bad YAML or definitions; the message is ready to show, one line per problem."""

    exit_code = 2

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems is not None else [message]

    @classmethod
    def collected(cls, problems: Sequence[str]) -> DefinitionError:
        return cls("\n".join(problems), problems)


class InputDataError(TilewiseError):
    """Bad input data or command arguments."""

    exit_code = 2


class ValidationFailed(TilewiseError):
    """A data-quality gate rejected a table; nothing was published."""

    exit_code = 1
