"""The one error tree of slmstack.

Every error says what happened, the offending value, and how to fix it. Catch
:class:`SlmstackError` to handle anything the library raises on purpose.

    SlmstackError
    ├── ConfigError            invalid parameters, workflow or skill configuration
    │   ├── WorkflowError          a workflow file failed validation (every problem, with lines)
    │   └── RulePackError          a compliance rule pack failed validation (same, with lines)
    ├── DataError              an input file or record is unusable (carries path and row)
    ├── ModelError
    │   ├── ModelNotFoundError     a base model could not be resolved
    │   ├── IntegrityError         a file does not match its pinned sha256
    │   └── UnsafeWeightsError     pickled weights without an explicit opt-in
    ├── SkillError
    │   ├── NotFittedError         predict/save before fit
    │   ├── ArtifactError          a saved skill folder is missing or inconsistent
    │   ├── ExportRefused          an export failed its parity check or accuracy gate
    │   └── NotStreamableError     the skill's output cannot be streamed token by token
    ├── MissingDependencyError     an optional extra is not installed
    ├── BackendError               a generator or remote LLM call failed
    ├── InboxError                 the escalation inbox cannot be opened or an action is refused
    ├── JobStopped                 a batch job stopped: its rows keep failing (done rows are kept)
    └── ServeError                 the HTTP server refused a request (mapped to a 4xx/5xx status)
        ├── Unauthorized               no API key, or an unknown one (401)
        ├── Overloaded                 the queue is full; retry after ``retry_after_s`` (429)
        ├── DeadlineExceeded           the request's deadline passed before it was answered (504)
        ├── PayloadTooLarge            the request body is over the size limit (413)
        ├── NotServed                  no skill or workflow of that name is served (404)
        ├── ShuttingDown               the server is draining and takes no new work (503)
        └── Unavailable                the server cannot take work now (its ledger is down; 503)
"""

from __future__ import annotations

from pathlib import Path


class SlmstackError(Exception):
    """Base class of every error raised on purpose by slmstack.

    Every error pickles with its message and attributes, so one raised in a worker
    process (a batch job, Ray) reaches the caller whole, whatever its ``__init__`` takes.
    """

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(
    cls: type[SlmstackError], args: tuple[object, ...], state: dict[str, object]
) -> SlmstackError:
    """An error of class ``cls`` with ``args`` and ``state``, without calling its ``__init__``."""
    error = cls.__new__(cls, *args)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ConfigError(SlmstackError, ValueError):
    """A parameter or configuration value is invalid."""


class WorkflowError(ConfigError):
    """A workflow failed validation; ``problems`` lists ``(where, path, message)``."""

    def __init__(self, name: str, problems: list[tuple[str, str, str]]):
        lines = [f"{where}{path}: {message}" for where, path, message in problems]
        head = lines[0] if len(lines) == 1 else f"workflow {name!r} has {len(lines)} errors:"
        body = "" if len(lines) == 1 else "\n  " + "\n  ".join(lines)
        super().__init__(head + body)
        self.problems = problems


class RulePackError(ConfigError):
    """A compliance rule pack failed validation; ``problems`` lists ``(where, path, message)``."""

    def __init__(self, source: str, problems: list[tuple[str, str, str]]):
        lines = [f"{where}{path}: {message}" for where, path, message in problems]
        head = lines[0] if len(lines) == 1 else f"rule pack {source} has {len(lines)} errors:"
        body = "" if len(lines) == 1 else "\n  " + "\n  ".join(lines)
        super().__init__(head + body)
        self.problems = problems


class DataError(SlmstackError, ValueError):
    """An input file or record cannot be used.

    Attributes:
        path: the file, when the data came from one.
        row: the 1-based line (CSV/TSV counts the header as line 1) or record number.
    """

    def __init__(self, message: str, *, path: Path | str | None = None, row: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}"
            if row is not None:
                where += f":{row}"
            where += ": "
        super().__init__(where + message)
        self.path = Path(path) if path is not None else None
        self.row = row


class ModelError(SlmstackError):
    """A base model could not be loaded."""


class ModelNotFoundError(ModelError, LookupError):
    """A model reference resolves to nothing usable on this machine."""


class IntegrityError(ModelError):
    """A weight file does not match its pinned sha256."""


class UnsafeWeightsError(ModelError):
    """Only pickled weights were found and pickles were not explicitly allowed."""


class SkillError(SlmstackError):
    """A skill was used in a way its state does not allow."""


class NotFittedError(SkillError):
    """The skill must be fitted (or loaded) first."""


class ArtifactError(SkillError):
    """A saved skill folder is missing files or is inconsistent."""


class ExportRefused(SkillError):
    """An export failed its parity check or its accuracy gate; nothing was written."""


class MissingDependencyError(SlmstackError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the '{package}' package. "
            f"Install it with: pip install 'slmstack[{extra}]'"
        )
        self.package = package
        self.extra = extra


class BackendError(SlmstackError):
    """A generator backend or remote LLM call failed."""


class InboxError(SlmstackError):
    """The escalation inbox cannot be opened, or an action on a packet is refused."""


class JobStopped(SlmstackError):
    """A batch job stopped because its rows keep failing; the rows done so far are kept."""


class ServeError(SlmstackError):
    """The HTTP server refused a request; each subclass maps to one HTTP status."""


class Unauthorized(ServeError):
    """The request carries no API key, or one the server does not know (HTTP 401)."""


class Overloaded(ServeError):
    """A bounded queue is full (HTTP 429); ``retry_after_s`` estimates when it has room."""

    def __init__(self, message: str, *, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(ServeError, TimeoutError):
    """The request's deadline passed before its answer was ready (HTTP 504)."""


class PayloadTooLarge(ServeError):
    """The request body is larger than the server's ``limits.max_body_bytes`` (HTTP 413)."""


class NotServed(ServeError, LookupError):
    """No skill or workflow of the requested name is served (HTTP 404); lists those served."""


class ShuttingDown(ServeError):
    """The server is draining: it finishes queued work but takes no new work (HTTP 503)."""


class Unavailable(ServeError):
    """The server cannot take work now: its ledger or rate-limit database fails (HTTP 503).

    ``retry_after_s``: when to try again.
    """

    def __init__(self, message: str, *, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotStreamableError(SkillError):
    """The skill post-processes its generated text, so it cannot stream it token by token."""


__all__ = [
    "ArtifactError",
    "BackendError",
    "ConfigError",
    "DataError",
    "DeadlineExceeded",
    "ExportRefused",
    "InboxError",
    "IntegrityError",
    "JobStopped",
    "MissingDependencyError",
    "ModelError",
    "ModelNotFoundError",
    "NotFittedError",
    "NotServed",
    "NotStreamableError",
    "Overloaded",
    "PayloadTooLarge",
    "RulePackError",
    "ServeError",
    "ShuttingDown",
    "SkillError",
    "SlmstackError",
    "Unauthorized",
    "Unavailable",
    "UnsafeWeightsError",
    "WorkflowError",
]


class DataWarning(UserWarning):
    """Data is usable but suspicious (duplicates, conflicting labels)."""


__all__ += ["DataWarning"]
