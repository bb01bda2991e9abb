"""The error types a user can meet, each turned into one line by the CLI."""

from __future__ import annotations

from collections.abc import Sequence


class RampFleetError(Exception):
    """Base class: an expected failure with a message meant for a person."""

    exit_code = 1


class UsageError(RampFleetError):
    """The user asked for something impossible (bad name, missing path...)."""

    exit_code = 2


class ConfigError(UsageError):
    """One or more problems in an event config, one line per problem."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class CommandError(RampFleetError):
    """A local or remote command failed.

    Carries what a person needs to understand the failure: the command (as an
    argv list, never a shell string), its exit code and the tail of its output.
    """

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str = "", stderr: str = ""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        tail = (stderr or stdout).strip().splitlines()[-5:]
        detail = (": " + " | ".join(tail)) if tail else ""
        super().__init__(f"command {self.argv[0]!r} exited with {returncode}{detail}")
