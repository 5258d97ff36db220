"""``Workflow``: a validated graph of steps over named skills, and ``run(text) -> Result``.

``run_batch(texts)`` runs each step once per batch instead (see ``batching.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import slmstack.workflows.steps  # noqa: F401  (registers the built-in step kinds)
from slmstack.errors import ConfigError, DataError, WorkflowError
from slmstack.types import Prediction
from slmstack.workflows.base import CheckEnv, RunContext, Runtime, SkillLike, Step
from slmstack.workflows.batching import (
    KeptAnswers,
    Run,
    check_batch,
    run_texts,
    share_run_latency,
)
from slmstack.workflows.metering import Meter, meter_for
from slmstack.workflows.steps.sequence import check_steps, run_steps
from slmstack.workflows.trace import Escalation, Result

if TYPE_CHECKING:
    from slmstack.backends.base import Backend
    from slmstack.costs.ledger import Ledger
    from slmstack.workflows.inbox import Inbox
    from slmstack.workflows.metering import PricesArg
    from slmstack.workflows.packet import Packet


def locate(source: Path, lines: Mapping[str, int], path: str) -> str:
    """``file.yaml:12: `` for the closest enclosing path with a known line."""
    probe = path
    while probe:
        if probe in lines:
            return f"{source}:{lines[probe]}: "
        cut = max(probe.rfind("."), probe.rfind("["))
        probe = probe[:cut] if cut > 0 else ""
    return f"{source}: "


def graph_problems(
    steps: Sequence[Step],
    skills: Mapping[str, Any],
    backends: Mapping[str, Any],
    blocks: Mapping[str, list[Step]],
) -> list[tuple[str, str]]:
    """``(path, message)`` of every problem of the graph, each once (a block used twice).

    A block no step uses is a problem too: it is never checked, so a typo in it would wait.
    """
    env = CheckEnv(skills, backends, blocks)
    check_steps(steps, env, "steps")
    for name in blocks:
        if name not in env.used_blocks:
            env.error(
                f"blocks.{name}",
                f"block {name!r} is never used; use it in a step (`block: {name}`) or remove it",
            )
    return list(dict.fromkeys(env.errors))


class Workflow:
    """A graph of steps over named skills, validated when built.

    Args:
        steps: the top-level steps, run in order.
        skills: name → skill (anything with ``predict(list[str]) -> list[Prediction]``).
        name: shown in traces and stored with escalation packets.
        backends: name → LLM backend that ``escalate: {to: NAME}`` may call.
        blocks: name → steps that ``block: NAME`` runs.
        inbox: where human escalations go; by default the SQLite inbox named by
            ``$SLMSTACK_INBOX_URL`` or ``sqlite:///slmstack-inbox.db``, opened on first use.
        source: the YAML file it came from, and ``lines`` the line of each path in it,
            so that errors point into the file.
        ledger: a :class:`~slmstack.costs.Ledger` or database URL where each run and step
            is appended with its tokens, time and cost; none by default.
        prices: a price table, or a YAML file or mapping over the packaged one
            (:func:`slmstack.costs.load_prices`). A remote LLM with no price in it is an
            error here, ledger or not.
        machine: the priced machine local steps run on (default: the table's).

    Example:
        >>> from slmstack.workflows import Workflow, SkillStep, RouteStep, TemplateStep
        >>> wf = Workflow(
        ...     [SkillStep("intent"),
        ...      RouteStep({"faq": SkillStep("faq")}, TemplateStep("Sorry?"), on="intent")],
        ...     skills={"intent": intent_clf, "faq": faq_answerer},
        ... )  # doctest: +SKIP
        >>> wf.run("how do I reset my password?").answer  # doctest: +SKIP
    """

    def __init__(
        self,
        steps: Sequence[Step],
        *,
        skills: Mapping[str, SkillLike],
        name: str = "workflow",
        backends: Mapping[str, Backend] | None = None,
        blocks: Mapping[str, Sequence[Step]] | None = None,
        inbox: Inbox | str | None = None,
        source: Path | None = None,
        lines: Mapping[str, int] | None = None,
        ledger: Ledger | str | None = None,
        prices: PricesArg = None,
        machine: str | None = None,
    ):
        if not steps:
            raise ConfigError(f"workflow {name!r} has no steps; add at least one under `steps:`")
        for key, skill in skills.items():
            if not isinstance(skill, SkillLike):
                raise ConfigError(
                    f"skill {key!r} is a {type(skill).__name__}, which has no "
                    "predict(texts) method; pass a skill or a loaded skill folder"
                )
        self.name = name
        self.steps = list(steps)
        self.skills = dict(skills)
        self.backends = dict(backends or {})
        self.blocks = {k: list(v) for k, v in (blocks or {}).items()}
        self.source = source
        self._lines = dict(lines or {})
        self._inbox_arg = inbox
        self._inbox: Inbox | None = None
        self._inbox_lock = threading.Lock()
        self.validate()
        # A failed batch's paid LLM answers, for its texts' next run (see batching.py).
        self._answers = KeptAnswers()
        backends = self._answers.wrap(self.backends)
        self._runtime = Runtime(name, self.skills, backends, self.blocks)
        self._meter = meter_for(
            name, skills=self.skills, backends=self.backends, ledger=ledger, prices=prices,
            machine=machine,
        )  # fmt: skip

    # ------------------------------------------------------------------ validation
    def _where(self, path: str) -> str:
        return "" if self.source is None else locate(self.source, self._lines, path)

    def validate(self) -> None:
        """Check the whole graph before anything runs; raise :class:`WorkflowError`."""
        problems = graph_problems(self.steps, self.skills, self.backends, self.blocks)
        if problems:
            raise WorkflowError(self.name, [(self._where(p), p, m) for p, m in problems])

    # ------------------------------------------------------------------ inbox
    @property
    def inbox(self) -> Inbox:
        """The escalation inbox, opened on first use."""
        with self._inbox_lock:
            if self._inbox is None:
                from slmstack.workflows.inbox import Inbox
                from slmstack.workflows.packet import default_url

                arg = self._inbox_arg
                self._inbox = arg if isinstance(arg, Inbox) else Inbox(arg or default_url())
            return self._inbox

    @property
    def ledger(self) -> Ledger | None:
        """The cost ledger runs are appended to (opened on first use), or ``None``."""
        return None if self._meter is None else self._meter.ledger

    def close(self) -> None:
        """Flush the ledger and release what the workflow opened: databases, thread pools.

        An inbox or ledger passed in as an object is left open (its owner closes it). The
        workflow can run again afterwards; it reopens what it needs.
        """
        for step in [*self.steps, *(s for block in self.blocks.values() for s in block)]:
            step.close()
        if self._meter is not None:
            self._meter.close()
        with self._inbox_lock:
            inbox, self._inbox = self._inbox, None
        if inbox is not None and not isinstance(self._inbox_arg, type(inbox)):
            inbox.close()

    def __enter__(self) -> Workflow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def meter(self) -> Meter:
        """How this workflow's calls are priced (its own meter, or one on default prices)."""
        if self._meter is not None:
            return self._meter
        return Meter(self.name, skills=self.skills, backends=self.backends)

    # ------------------------------------------------------------------ running
    def run(self, text: str, *, key: str | None = None, caller: str | None = None) -> Result:
        """Run the workflow on one text.

        Args:
            text: the input.
            key: an idempotency key for the escalation packet and the ledger's request id:
                running again with the same key (for example after an interrupted batch)
                files no second packet and no second ledger rows.
            caller: who asked (a server's API key name), stored with the ledger rows.
        """
        result = self._run(text, key)
        if self._meter is not None:
            self._meter.record(result, key, caller=caller)
        return result

    def _run(self, text: str, key: str | None) -> Result:
        if not isinstance(text, str):
            raise DataError(f"a workflow runs on a text (str); got {type(text).__name__}")
        start = time.perf_counter()
        run = None
        if text.strip():
            ctx = RunContext(text, self._runtime)
            run = (ctx, run_steps(self.steps, ctx, "steps"))
        result = self._result(text, run, key)
        return replace(result, latency_ms=(time.perf_counter() - start) * 1000)

    def _result(self, text: str, run: Run | None, key: str | None) -> Result:
        """The result of one text's run (``None``: the text was empty); files its packet."""
        packet = self._packet(run, key)
        packet_id = None if packet is None else self.inbox.add(packet)
        return self._finish(text, run, packet_id)

    @staticmethod
    def _packet(run: Run | None, key: str | None) -> Packet | None:
        """The inbox packet a run hands off, with its trace and key, or ``None``."""
        if run is None:
            return None
        ctx, traces = run
        hand_off = ctx.hand_off
        if hand_off is None or hand_off.packet is None:
            return None
        packet = hand_off.packet
        if hand_off.fill is not None:  # what other parallel branches found, now joined
            found = hand_off.fill(ctx.outputs)
            packet = replace(packet, **{k: v for k, v in found.items() if not getattr(packet, k)})
        return replace(packet, trace=[t.to_dict() for t in traces], key=key)

    @staticmethod
    def _finish(text: str, run: Run | None, packet_id: int | None) -> Result:
        """The result of one text's run, its packet (if any) filed as ``packet_id``."""
        if run is None:
            # Nothing to classify or hand off: escalate to the caller, and file no packet.
            why = "the input text is empty; no step ran and no inbox packet was filed"
            return Result(
                input=text, output=Prediction(abstained="empty_input"), outputs={},
                status="escalated", escalation=Escalation("caller", "empty_input", why),
                trace=[], latency_ms=0.0,
            )  # fmt: skip
        ctx, traces = run
        escalation = None
        hand_off = ctx.hand_off
        if hand_off is not None:
            escalation = Escalation(hand_off.to, hand_off.reason, hand_off.why, packet_id)
        output = traces[-1].output if traces and traces[-1].output else Prediction()
        return Result(
            input=text,
            output=output,
            outputs=dict(ctx.outputs),
            status="escalated" if escalation else "completed",
            escalation=escalation,
            trace=traces,
            latency_ms=0.0,
        )

    def run_batch(
        self,
        texts: Sequence[str],
        *,
        keys: Sequence[str | None] | None = None,
        callers: Sequence[str | None] | None = None,
    ) -> list[Result]:
        """Run the workflow on a batch of texts, each step once for the batch.

        Each skill's ``predict`` is called once per group of texts that reach it (a route
        splits the batch by branch, a cascade sends on only the texts its tier did not
        settle), and each result equals ``run(text, key=key)``: the same outputs,
        decisions, escalations, inbox packets (filed in input order) and ledger rows.
        Latencies differ: a skill step's latency is each text's share of the batch's
        time (see :mod:`slmstack.workflows.batching`).

        Args:
            texts: the inputs.
            keys: one idempotency key (or ``None``) per text, as in :meth:`run`.
            callers: one caller (or ``None``) per text, as in :meth:`run`.

        Example:
            >>> results = wf.run_batch(["where is my parcel?", "I want a refund"])  # doctest: +SKIP
            >>> [r.status for r in results]  # doctest: +SKIP
        """
        start = time.perf_counter()
        keys = check_batch(texts, keys)
        who = check_batch(texts, callers, "caller")
        with self._answers.batch():  # until its rows are recorded, its LLM answers are kept
            runs = run_texts(self.steps, self._runtime, texts)
            # The batch's packets go to the inbox in one transaction, in input order.
            packets = [self._packet(r, k) for r, k in zip(runs, keys, strict=True)]
            filed = [p for p in packets if p is not None]
            filed_ids = iter(self.inbox.add_many(filed) if filed else [])
            results = [
                self._finish(t, r, None if p is None else next(filed_ids))
                for t, r, p in zip(texts, runs, packets, strict=True)
            ]
            results = share_run_latency(results, (time.perf_counter() - start) * 1000)
            if self._meter is not None:
                for result, key, caller in zip(results, keys, who, strict=True):
                    self._meter.record(result, key, caller=caller)
        return results

    def run_many(self, texts: Sequence[str]) -> list[Result]:
        """Run on each text in turn (see :func:`slmstack.workflows.run_batch` for files)."""
        return [self.run(t) for t in texts]
