"""Errors a user can act on: each carries a one-line message and the exit code the CLI uses.

Core code raises these; the CLI prints ``str(error)`` as one line on stderr and exits with
``error.exit_code``. Exit codes follow the house convention: 1 the operation failed,
2 bad usage or bad input, 130 interrupted.
"""

from __future__ import annotations


class SdhubError(Exception):
    """Base class: a message written for the user and an exit code."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(SdhubError):
    """The command was asked for something that cannot be done as asked (bad option, bad path)."""

    exit_code = 2


class HomeError(UsageError):
    """The home folder cannot be used (a file, unwritable, not a recognised layout)."""


class BadInputError(SdhubError):
    """An input file is corrupt, truncated or not what it claims to be."""

    exit_code = 2


class NotAModelError(BadInputError):
    """The file reads fine but holds no model: a pickle without tensors, or a stand-in (below)."""


class StandInFileError(NotAModelError):
    """A file saved under a model's name instead of the model: empty, a Git LFS pointer, a web page.

    Its hashes would be taken for the model's, so even ``hash`` refuses it.
    """


class UnsupportedStructureError(BadInputError):
    """A pickle holds tensors in a structure sdhub cannot name them from (under tuple keys, inside objects)."""


class UnsafeFileError(SdhubError):
    """A file would run code or touch things outside itself if loaded; it is refused."""

    exit_code = 1


class NotFoundError(SdhubError):
    """A reference (file, catalog entry, remote model) does not exist."""

    exit_code = 1


class MissingFileError(NotFoundError):
    """A file or folder named on the command line does not exist: bad input, so exit 2."""

    exit_code = 2


class VerificationError(SdhubError):
    """A result did not verify: hash mismatch, tensors differ, image check failed."""

    exit_code = 1


class NetworkError(SdhubError):
    """A remote server could not be reached or answered with an error."""

    exit_code = 1


class AuthError(NetworkError):
    """A remote server wants a token (or a better one): the message says how to provide it."""


class MissingDependencyError(SdhubError):
    """A local resource (config, tokenizer, optional package) is needed and not present."""

    exit_code = 1


class Interrupted(SdhubError):
    """The work was stopped (Ctrl-C, SIGTERM, a cancel in the TUI); partial output has been removed.

    ``reason`` is how it was stopped ("interrupted", "terminated", "convert: cancelled"), ``left``
    what the work leaves behind ("no output written", "12 of 40 files catalogued").
    """

    exit_code = 130

    def __init__(self, reason: str = "interrupted", *, left: str = "", exit_code: int | None = None) -> None:
        super().__init__(f"{reason}; {left}" if left else reason, exit_code=exit_code)
        self.reason = reason
        self.left = left
