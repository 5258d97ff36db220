"""The ingress's view of skills that live in other Ray Serve deployments.

:class:`RemoteSkill` is a skill as a workflow and the routes see it (``predict``,
``produces``, ``classes_``) whose ``predict`` is a call through a deployment handle to the
:class:`~slmstack.serve.ray_deployments.SkillHost` that loaded it. :class:`RayServeState`
is the local server's :class:`~slmstack.serve.state.ServeState` with its two loading hooks
swapped: a served skill becomes a ``RemoteSkill``, and a workflow is loaded with its
saved skills replaced by theirs. Everything else (routes, auth, limits, the micro-batcher
per target, deadlines, metering, the ledger, the inbox) is the local server's code, so the
two engines answer alike.

What crosses a process boundary is small and plain: :class:`HostCall` (a skill key and
texts) out, :class:`HostAnswer` (predictions, or the error a skill raised) back. A skill's
error comes back as a value rather than a raised Ray error, so that the ingress raises the
skill's own exception (a :class:`~slmstack.errors.DataError` stays a 422).

This module imports Ray only when a call is shed (to recognise Ray's back-pressure error).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmstack.errors import ConfigError, DeadlineExceeded, Overloaded, ServeError
from slmstack.serve.ray_plan import workflow_skill_folders
from slmstack.serve.state import ServeState
from slmstack.types import Prediction
from slmstack.workflows.engine import Workflow
from slmstack.workflows.metering import remote_models

_CARD_TIMEOUT_S = 120.0  # hosts are up before the ingress starts: slack for a busy node


@dataclass(frozen=True)
class HostCall:
    """One call to a skill host: the skill (its folder) and the texts."""

    key: str
    texts: list[str]


@dataclass(frozen=True)
class HostAnswer:
    """What a skill host returns for one call: predictions, or the skill's error."""

    predictions: list[Prediction] = field(default_factory=list)
    error: BaseException | None = None


@dataclass(frozen=True)
class SkillCard:
    """What the ingress needs to know about a hosted skill without loading it."""

    skill_name: str
    produces: frozenset[str]
    classes: tuple[str, ...] | None
    remote: tuple[str, ...]  # the LLMs it calls (first choice, then fallbacks): priced per token

    @classmethod
    def of(cls, skill: Any) -> SkillCard:
        """The card of a loaded skill."""
        classes = getattr(skill, "classes_", None)
        return cls(
            skill_name=str(getattr(skill, "skill_name", type(skill).__name__)),
            produces=frozenset(getattr(skill, "produces", ())),
            classes=None if classes is None else tuple(str(c) for c in classes),
            remote=tuple(remote_models(skill)),
        )


def texts_in(calls: Sequence[HostCall]) -> int:
    """The size of a batch of calls for ``@serve.batch``: its texts, not its calls."""
    return sum(len(call.texts) for call in calls)


def portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (to cross to the ingress), else a ``ServeError``."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return ServeError(f"{type(exc).__name__}: {exc}")
    return exc


@dataclass(frozen=True)
class _RemoteModel:
    """Stands for the LLM a hosted skill calls, so the meter prices it per token."""

    name: str
    base_url: str = "ray-serve"
    fallbacks: tuple[_RemoteModel, ...] = ()


class RemoteSkill:
    """A skill loaded by a skill host deployment, called through its handle.

    Args:
        handle: the host's deployment handle (anything with
            ``predict.remote(HostCall).result(timeout_s=...)``).
        key: the skill's key on the host (its folder).
        card: what the skill produces and can label.
        timeout_s: longest wait for one call (the request deadline).
        retry_after_s: the Retry-After of a call shed by the host's queue limit.
    """

    def __init__(
        self, handle: Any, key: str, card: SkillCard, *, timeout_s: float, retry_after_s: float
    ):
        self._handle = handle
        self.key = key
        self.card = card
        self.skill_name = card.skill_name
        self.produces = card.produces
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        if card.classes is not None:
            self.classes_ = list(card.classes)
        if card.remote:
            first, *rest = card.remote
            self.backend_ = _RemoteModel(first, fallbacks=tuple(_RemoteModel(n) for n in rest))

    def __repr__(self) -> str:
        return f"RemoteSkill({self.skill_name!r}, key={self.key!r})"

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, from the host (blocking: call it from a thread).

        Raises:
            Overloaded: the host's queue (``ray.models.max_queued_requests``) is full.
            DeadlineExceeded: no answer within the request deadline.
            SlmstackError: what the skill itself raised (a ``DataError`` for bad input).
        """
        response = self._handle.predict.remote(HostCall(self.key, list(texts)))
        try:
            answer: HostAnswer = response.result(timeout_s=self._timeout_s)
        except TimeoutError:
            # No one waits for it now: the host drops it from its queue (@serve.batch
            # leaves cancelled calls out), rather than spend an overloaded replica on it.
            response.cancel()
            raise DeadlineExceeded(
                f"skill {self.skill_name} ({self.key}) did not answer within "
                f"{self._timeout_s:g} s (limits.deadline_s)"
            ) from None
        except Exception as exc:
            if not _is_back_pressure(exc):
                raise
            wait = getattr(exc, "retry_after_s", None) or self._retry_after_s
            raise Overloaded(
                f"the deployment hosting skill {self.skill_name} is full ({exc}); retry after "
                f"{wait:g} s, or raise ray.models.max_queued_requests / max_replicas",
                retry_after_s=max(wait, 0.001),
            ) from None
        if answer.error is not None:
            raise answer.error
        if len(answer.predictions) != len(texts):
            raise ServeError(
                f"the host of {self.key} returned {len(answer.predictions)} predictions for "
                f"{len(texts)} texts"
            )
        return answer.predictions


def _is_back_pressure(exc: BaseException) -> bool:
    try:
        from ray.serve.exceptions import BackPressureError
    except ImportError:  # pragma: no cover - a handle exists only where Ray does
        return False
    return isinstance(exc, BackPressureError)


@dataclass
class RayServeState(ServeState):
    """The server state of an ingress replica: skills are handles to skill hosts.

    Attributes:
        hosts: skill folder → the handle of the deployment that loaded it.
        retry_after_s: the Retry-After of calls shed by a host's queue limit.
    """

    hosts: Mapping[str, Any] = field(default_factory=dict)
    retry_after_s: float = 1.0
    _remote: dict[str, RemoteSkill] = field(default_factory=dict)

    def _load_skill(self, folder: Path) -> RemoteSkill:
        key = str(folder)
        if key not in self._remote:
            handle = self.hosts.get(key)
            if handle is None:
                raise ConfigError(
                    f"no skill deployment hosts {key}; it was not in the plan the "
                    "application was built from: build it again from this config"
                )
            card = handle.card.remote(key).result(timeout_s=_CARD_TIMEOUT_S)
            self._remote[key] = RemoteSkill(
                handle, key, card, timeout_s=self.config.limits.deadline_s,
                retry_after_s=self.retry_after_s,
            )  # fmt: skip
        return self._remote[key]

    def _load_workflow(self, path: Path) -> Workflow:
        from slmstack.workflows.loader import load_workflow

        given = {name: self._load_skill(f) for name, f in workflow_skill_folders(path).items()}
        return load_workflow(path, skills=given, inbox=self.inbox, ledger=self.ledger)


__all__ = [
    "HostAnswer",
    "HostCall",
    "RayServeState",
    "RemoteSkill",
    "SkillCard",
    "portable",
    "texts_in",
]
