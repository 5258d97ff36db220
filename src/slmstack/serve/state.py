"""What a running server holds: its skills, workflows, batchers, ledger and inbox.

The method: :meth:`ServeState.create` does what must not fail later (keys, metrics), and
:meth:`ServeState.load` loads every model, which the app's lifespan runs before
``/readyz`` turns true. Each skill and each workflow gets one
:class:`~slmstack.serve.batcher.MicroBatcher`, and every batcher runs its model calls in
one shared executor, so the threads that compute are bounded by the config.

Threads: by default the executor has one thread and torch (or onnxruntime, for exported
skills) gets this process's share of the cores (cores / workers), so that batches of
different targets queue for the cores instead of fighting over them (two concurrent torch
calls on the same cores slow both). With ``threads.executor: E``, torch gets cores /
(workers × E).

Spend: each call's rows go to the ledger from the thread that ran it (a streamed answer's
when it ends), with the caller's key name (``api_key_id``). The ledger keeps them in
memory and :meth:`flush` (every second, from the app, and at shutdown) writes them, so a
slow or failing database never fails a request: rows that could not be written stay
buffered (in memory, while the database is down; each failed flush logs how many) and
are retried, the workflows' own ledgers' too. Past ``LEDGER_BACKLOG`` waiting rows, new
requests are refused (503, ``Retry-After``) and not run, so that an outage neither
exhausts memory nor serves requests that nothing records.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slmstack.costs.ledger import RUN, Ledger, LedgerRow
from slmstack.errors import ConfigError, NotServed, Unavailable
from slmstack.heap import freeze_loaded
from slmstack.models.onnx_runtime import THREADS_ENV as ONNX_THREADS_ENV
from slmstack.serve.auth import ApiKeys
from slmstack.serve.batcher import MicroBatcher
from slmstack.serve.config import ServeConfig
from slmstack.serve.metrics import Metrics
from slmstack.types import Prediction, Usage
from slmstack.workflows.engine import Workflow
from slmstack.workflows.inbox import Inbox
from slmstack.workflows.metering import Meter
from slmstack.workflows.trace import Result

_log = logging.getLogger("slmstack.serve")
# The server flushes its ledgers itself (see the module docstring): appends never write.
_NEVER = sys.maxsize
# Rows waiting for a ledger database that cannot be written, past which new requests are
# refused (503) rather than run with nowhere to record them: about 100 MB of memory.
LEDGER_BACKLOG = 100_000
LEDGER_FLUSH_RETRY_S = 5.0  # the Retry-After of that 503


@dataclass(frozen=True)
class Call:
    """One text of one request: its ledger/idempotency key and who asked."""

    text: str
    key: str
    caller: str | None


@dataclass(frozen=True)
class SkillAnswer:
    """A skill's prediction for one text, with its share of the batch's time and cost."""

    prediction: Prediction
    latency_ms: float
    cost_nusd: int


@dataclass(frozen=True)
class WorkflowAnswer:
    """A workflow's result for one text, with its cost (its ledger run row's)."""

    result: Result
    cost_nusd: int


def cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_counts(config: ServeConfig, workers: int) -> tuple[int, int]:
    """``(executor threads, torch threads)`` for one of ``workers`` processes."""
    executor = config.threads.executor or 1
    torch = config.threads.torch or max(1, cores() // max(1, workers * executor))
    return executor, torch


def _set_torch_threads(n: int) -> None:
    """``torch.set_num_threads(n)`` when a skill has imported torch (never import it here)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def size_of(call: Call) -> int:
    """A text's tokens, estimated at 4 characters each (bounds a batch's padded size)."""
    return len(call.text) // 4 + 1


@dataclass
class ServeState:
    """The server's runtime objects, at ``app.state.serve``.

    Attributes:
        config: the validated config.
        metrics: the Prometheus series.
        keys: the API keys, or ``None`` when the config has no ``auth:``.
        skills, workflows: what is served, by name (filled by :meth:`load`).
        batchers: one per target, keyed ``"skill:NAME"`` / ``"workflow:NAME"``.
        ledger, inbox: the config's shared ledger and inbox, when it names them.
        ready: every model is loaded and every batcher started (``/readyz``).
        draining: a shutdown has begun; readiness is false from then on.
    """

    config: ServeConfig
    metrics: Metrics
    keys: ApiKeys | None
    workers: int = 1
    skills: dict[str, Any] = field(default_factory=dict)
    workflows: dict[str, Workflow] = field(default_factory=dict)
    batchers: dict[str, MicroBatcher[Call, Any]] = field(default_factory=dict)
    ledger: Ledger | None = None
    inbox: Inbox | None = None
    ready: bool = False
    draining: bool = False
    _meters: dict[str, Meter] = field(default_factory=dict)
    _skill_meter: Meter | None = None
    _executor: concurrent.futures.ThreadPoolExecutor | None = None

    @classmethod
    def create(cls, config: ServeConfig, *, workers: int = 1) -> ServeState:
        """What the app needs before any model loads: metrics and the keys.

        Raises:
            ConfigError: the keys' variable or file is missing or malformed.
        """
        keys = None if config.auth is None else ApiKeys.from_config(config.auth)
        if keys is None:
            _log.warning(
                "serving WITHOUT authentication: the config has no `auth:` section, so "
                "anyone who can reach this port can call every route; add `auth:` with "
                "keys_env or keys_file before exposing it"
            )
        return cls(config=config, metrics=Metrics(), keys=keys, workers=workers)

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        """Load every skill and workflow, open the ledger and inbox, set thread counts.

        Blocking (seconds for real models); the app runs it before ``/readyz`` is true.
        """
        config = self.config
        if config.ledger is not None:
            self.ledger = Ledger(config.ledger)
        self.inbox = self._open_inbox()
        executor_threads, torch_threads = thread_counts(config, self.workers)
        # Exported (ONNX) skills size their sessions from this when they load: the same
        # share of the cores as torch gets, unless the operator set it.
        os.environ.setdefault(ONNX_THREADS_ENV, str(torch_threads))
        for name, folder in config.skills.items():
            _log.info("loading skill %s from %s", name, folder)
            self.skills[name] = self._load_skill(folder)
        for name, path in config.workflows.items():
            _log.info("loading workflow %s from %s", name, path)
            workflow = self._load_workflow(path)
            self.workflows[name] = workflow
            self._meters[name] = workflow.meter()
        for ledger in self.ledgers():  # the config's, and the workflows' own
            # Written by flush() alone: an append that wrote would run on a model thread
            # and fail its request when the database does.
            ledger.batch_size, ledger.flush_every_s = _NEVER, math.inf
        self._skill_meter = Meter(
            "serve", skills=self.skills, backends={}, prices=config.prices,
            machine=config.machine,
        )  # fmt: skip
        _set_torch_threads(torch_threads)
        # Set again in each model thread: OpenMP keeps the count per thread.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=executor_threads, thread_name_prefix="slmstack-model",
            initializer=_set_torch_threads, initargs=(torch_threads,),
        )  # fmt: skip
        batching, limits = config.batching, config.limits
        for kind, names in (("skill", self.skills), ("workflow", self.workflows)):
            for name in names:
                target = f"{kind}:{name}"
                fn = self._skill_fn(name) if kind == "skill" else self._workflow_fn(name)
                self.batchers[target] = MicroBatcher(
                    target, fn, max_batch=batching.max_batch, max_wait_ms=batching.max_wait_ms,
                    max_tokens=batching.max_tokens, size_of=size_of,
                    queue_size=limits.queue_size, executor=self._executor,
                    on_batch=self.metrics.batch_observer(target),
                )  # fmt: skip
        freeze_loaded()  # no full collection walks the loaded models mid-request

    def _load_skill(self, folder: Path) -> Any:
        """One served skill, loaded here (the Ray engine's state returns a handle instead)."""
        from slmstack.skills.base import load

        return load(folder)

    def _load_workflow(self, path: Path) -> Workflow:
        """One served workflow, its skills loaded here (the Ray engine's call deployments)."""
        from slmstack.workflows.loader import load_workflow

        return load_workflow(path, inbox=self.inbox, ledger=self.ledger)

    def _open_inbox(self) -> Inbox | None:
        """The config's inbox; else the one every workflow files to, when they agree.

        Workflows that file to different inboxes keep their own, and the HTTP inbox is
        off (a warning says how to turn it on).
        """
        from slmstack.workflows.loader import workflow_inbox_url
        from slmstack.workflows.packet import default_url

        if self.config.inbox is not None:
            return Inbox(self.config.inbox)
        urls = {workflow_inbox_url(p) or default_url() for p in self.config.workflows.values()}
        if len(urls) == 1:
            return Inbox(urls.pop())
        if urls:
            _log.warning(
                "the workflows file escalations to %d different inboxes, so the HTTP inbox "
                "(/v1/inbox) is off; name one under `inbox:` in the serve config",
                len(urls),
            )
        return None

    async def start(self) -> None:
        """Start every batcher on the running loop; the server is ready after this."""
        for batcher in self.batchers.values():
            await batcher.start()
        self.ready = True

    # ------------------------------------------------------------------ serving
    def batcher(self, kind: str, name: str) -> MicroBatcher[Call, Any]:
        """The batcher of skill or workflow ``name``.

        Raises:
            NotServed: no such name is served; the message lists those that are.
        """
        found = self.batchers.get(f"{kind}:{name}")
        if found is None:
            served = self.skills if kind == "skill" else self.workflows
            names = ", ".join(sorted(served)) or "none"
            other = self.workflows if kind == "skill" else self.skills
            hint = ""
            if name in other:
                plural = "workflows" if kind == "skill" else "skills"
                hint = f"; {name!r} is one of the {plural}: use /v1/{plural}/{name}/..."
            shown = repr(name) if len(name) <= 100 else repr(name[:100]) + "…"  # echo no megabyte
            raise NotServed(f"no {kind} {shown} is served (the {kind}s are: {names}){hint}")
        return found

    @staticmethod
    def calls(texts: Sequence[str], caller: str | None) -> tuple[str, list[Call]]:
        """A new request id and one :class:`Call` per text (ledger key ``ID:INDEX``)."""
        request_id = uuid.uuid4().hex
        return request_id, [Call(t, f"{request_id}:{i}", caller) for i, t in enumerate(texts)]

    def admit(self) -> None:
        """:class:`Unavailable` (503) while ``LEDGER_BACKLOG`` rows wait for their database."""
        backlog = sum(ledger.pending for ledger in self.ledgers())
        if backlog >= LEDGER_BACKLOG:
            raise Unavailable(
                f"the ledger database cannot be written now ({backlog} rows wait in memory), "
                "so this request was not run; retry later (the server's log has the "
                "database's error)",
                retry_after_s=LEDGER_FLUSH_RETRY_S,
            )

    async def submit(self, batcher: MicroBatcher[Call, Any], calls: list[Call]) -> list[Any]:
        """Queue ``calls`` (if :meth:`admit` lets them) under the deadline; their answers."""
        self.admit()
        deadline = time.monotonic() + self.config.limits.deadline_s
        try:
            return await batcher.submit(calls, deadline=deadline)
        finally:
            self.metrics.set_queue_depth(batcher.name, batcher.depth)

    def _skill_fn(self, name: str) -> Any:
        skill = self.skills[name]

        def run(calls: list[Call]) -> list[SkillAnswer]:
            start = time.perf_counter()
            predictions = skill.predict([c.text for c in calls])
            share = (time.perf_counter() - start) / len(calls)
            answers = []
            for call, pred in zip(calls, predictions, strict=True):
                cost = self.meter_skill_call(
                    name, call.key, call.caller, pred.usage, share, decision=pred.label,
                    abstained=pred.abstained,
                )  # fmt: skip
                answers.append(SkillAnswer(pred, share * 1000, cost))
            return answers

        return run

    def meter_skill_call(
        self, name: str, key: str, caller: str | None, usage: Usage, seconds: float, *,
        decision: str | None = None, abstained: str | None = None,
    ) -> int:  # fmt: skip
        """Price a call to skill ``name`` (nano-dollars), count it, buffer its ledger rows."""
        meter = self._skill_meter
        assert meter is not None  # set by load()
        target, at = f"skill:{name}", datetime.now(UTC)
        tokens_in, tokens_out = usage.input_tokens, usage.output_tokens
        # by the models that answered: a remote backend's fallback has its own price
        model, machine, compute_s, cost = meter.skill_priced(
            name, usage.by_model, tokens_in, tokens_out, seconds
        )
        self.metrics.add_usage(target, tokens_in, tokens_out, cost)
        if self.ledger is not None:
            step = LedgerRow(
                key, "predict", target, name, "skill", at, model=model, machine=machine,
                tokens_in=tokens_in, tokens_out=tokens_out, latency_ms=seconds * 1000,
                compute_s=compute_s, cost_nusd=cost, decision=decision, api_key_id=caller,
            )  # fmt: skip
            run_row = LedgerRow(
                key, "", target, "", RUN, at, tokens_in=tokens_in, tokens_out=tokens_out,
                latency_ms=seconds * 1000, compute_s=step.compute_s, cost_nusd=cost,
                decision="abstained" if abstained else "completed", reason=abstained,
                api_key_id=caller,
            )  # fmt: skip
            self.ledger.append([step, run_row])
        return cost

    def _workflow_fn(self, name: str) -> Any:
        workflow = self.workflows[name]

        def run(calls: list[Call]) -> list[WorkflowAnswer]:
            results = workflow.run_batch(
                [c.text for c in calls], keys=[c.key for c in calls],
                callers=[c.caller for c in calls],
            )  # fmt: skip
            meter = self._meters[name]
            at = datetime.now(UTC)
            answers = []
            for call, result in zip(calls, results, strict=True):
                cost = meter.rows(result, call.key, at)[-1].cost_nusd  # the run row's
                self.metrics.observe_run(name, result, cost_nano=cost)
                answers.append(WorkflowAnswer(result, cost))
            return answers

        return run

    # ------------------------------------------------------------------ ledgers
    def ledgers(self) -> list[Ledger]:
        """Every ledger calls are written to: the config's, and workflows' own."""
        found: dict[int, Ledger] = {}
        for ledger in (self.ledger, *(w.ledger for w in self.workflows.values())):
            if ledger is not None:
                found[id(ledger)] = ledger
        return list(found.values())

    def flush(self) -> int:
        """Write every buffered ledger row; a database that fails keeps its rows buffered.

        Returns the rows written. Errors are logged, not raised: this runs on a timer and
        at shutdown, and the rows are retried on the next flush (or at exit).
        """
        written = 0
        for ledger in self.ledgers():
            try:
                written += ledger.flush()
            except ConfigError as exc:
                _log.error("ledger flush failed, rows kept for the next try: %s", exc)
        return written

    async def close(self) -> None:
        """Drain: stop taking work, finish queued batches, write the ledger, free threads."""
        import asyncio

        self.ready = False
        self.draining = True
        timeout = self.config.shutdown.drain_timeout_s
        await asyncio.gather(*(b.close(timeout) for b in self.batchers.values()))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.flush)
        self.metrics.close()


__all__ = ["Call", "ServeState", "SkillAnswer", "WorkflowAnswer", "thread_counts"]
