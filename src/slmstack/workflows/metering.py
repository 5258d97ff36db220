"""Metering: cost each run of a workflow from its trace and append it to the ledger.

The method: when a workflow is built, every skill and LLM backend it may call is given a
way to be costed, so that a missing price fails then, never at run time and never as a
silent $0:

- a **remote API** (a backend with a ``base_url``, or a skill holding one as ``backend_``,
  ``backend`` or ``model``) is priced per token from the price table, under the backend's
  model name; a model the table prices with ``machine:`` (one you serve yourself) costs
  its calls' wall time on that machine; a backend without a ``base_url`` (a plug-in
  runtime's API client) whose model the table prices is priced as the table says too,
  since a workflow file requires that price of every runtime that is not local;
- anything else runs **locally** (small models, llama.cpp, transformers) and costs its
  wall time × the hourly price of the workflow's machine (``machine:``, by default the
  table's ``default_machine``). Wall time, not CPU time: a machine serving one request at
  a time is paid for while it waits, too.

After each run the trace becomes ledger rows: one per step that did work (a trace node
without children) or decided something (a route), and one for the run. A step's tokens
and time are its own, less its children's, so the step rows add up to the run. Parallel
branches overlap in time; each is priced in full, which overstates their machine time
rather than hiding it. Rows go through the ledger's buffer (see ``costs/ledger.py``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from slmstack.costs.ledger import RUN, Ledger, LedgerRow
from slmstack.costs.prices import PriceTable, load_prices, to_nano, with_default_machine
from slmstack.errors import ConfigError
from slmstack.workflows.trace import Result, StepTrace

# Runtimes that run in this process, on this machine; any other runtime (``openai``, or a
# plug-in) is treated as a paid API and must have a price.
LOCAL_RUNTIMES = frozenset({"llama_cpp", "transformers"})

PricesArg = PriceTable | str | Path | Mapping[str, Any] | None


@dataclass(frozen=True)
class _Pricing:
    """How one skill or backend is costed: per token (``machine is None``) or by time."""

    model: str
    per_token: bool
    machine: str | None


def remote_models(obj: object) -> list[str]:
    """The remote models ``obj`` may call (a backend, or a skill holding one).

    The first choice first, then its ``fallbacks``; empty for anything local.
    """
    for candidate in (obj, *(getattr(obj, a, None) for a in ("backend_", "backend", "model"))):
        if candidate is not None and isinstance(getattr(candidate, "base_url", None), str):
            fallbacks = getattr(candidate, "fallbacks", None) or []
            return [str(getattr(b, "name", "")) for b in (candidate, *fallbacks)]
    return []


def spec_prices(spec: Any, base: Path) -> tuple[PriceTable | None, list[tuple[str, str]]]:
    """The price table a workflow file needs, and ``(path, message)`` problems.

    ``spec`` is the validated file (``prices``, ``machine``, ``ledger``, ``backends``). The
    table is loaded only when the file keeps a ledger, names prices or a machine, or
    declares a backend outside :data:`LOCAL_RUNTIMES`; each such backend's model must
    have a price.
    """
    remote = {k: b for k, b in spec.backends.items() if b.runtime not in LOCAL_RUNTIMES}
    if not (remote or spec.ledger or spec.prices is not None or spec.machine):
        return None, []
    try:
        table = load_prices(spec.prices, base=base)
    except ConfigError as exc:
        return None, [("prices", str(exc))]
    problems = []
    try:
        table = with_default_machine(table, spec.machine)
    except ConfigError as exc:
        problems.append(("machine", str(exc)))
    for key, backend in remote.items():
        fallbacks = backend.options.get("fallbacks") or []
        models = [(f"backends.{key}.model", backend.model)] + [
            (f"backends.{key}.options.fallbacks[{i}]", f.get("model"))
            for i, f in enumerate(fallbacks)
            if isinstance(f, Mapping)
        ]
        for path, model in models:
            if isinstance(model, str) and model not in table.models:
                try:
                    table.model(model)
                except ConfigError as exc:
                    why = f"backend {key!r} (runtime {backend.runtime!r}) calls a paid API: {exc}"
                    problems.append((path, why))
    return table, problems


class Meter:
    """Costs a workflow's runs and appends them to its ledger.

    Args:
        workflow: the workflow's name.
        skills, backends: what the workflow may call (each is resolved to a price now).
        ledger: a :class:`~slmstack.costs.Ledger` or a database URL (opened on first run);
            ``None`` checks prices only and records nothing.
        prices: a price table, a YAML file or a mapping over the packaged table.
        machine: the machine local steps run on (default: the table's).

    Raises:
        ConfigError: a remote model or the machine has no price.
    """

    def __init__(
        self,
        workflow: str,
        *,
        skills: Mapping[str, object],
        backends: Mapping[str, object],
        ledger: Ledger | str | None = None,
        prices: PricesArg = None,
        machine: str | None = None,
    ):
        table = prices if isinstance(prices, PriceTable) else load_prices(prices)
        self.prices = with_default_machine(table, machine)
        self.machine = self.prices.machine(self.prices.default_machine).machine
        self.workflow = workflow
        self._by_model: dict[str, _Pricing] = {}  # every remote model, fallbacks included
        self._skills = {k: self._resolve(f"skill {k!r}", s, k) for k, s in skills.items()}
        self._backends = {
            k: self._resolve(f"backend {k!r}", b, str(getattr(b, "name", k)), by_name=True)
            for k, b in backends.items()
        }
        self._ledger_arg = ledger
        self._ledger: Ledger | None = ledger if isinstance(ledger, Ledger) else None
        self._lock = threading.Lock()

    def _resolve(self, what: str, obj: object, local_name: str, by_name: bool = False) -> _Pricing:
        models = remote_models(obj)
        if not models and by_name and local_name in self.prices.models:
            models = [local_name]  # a plug-in runtime's client: no base_url to tell it by
        if not models:
            return _Pricing(local_name, False, self.machine)
        for model in models:
            try:
                price = self.prices.model(model)
            except ConfigError as exc:
                raise ConfigError(
                    f"{what} of workflow {self.workflow!r} calls a paid API: {exc}"
                ) from None
            self._by_model[model] = _Pricing(model, price.machine is None, price.machine)
        return self._by_model[models[0]]

    @property
    def ledger(self) -> Ledger | None:
        """The ledger, opened on first use; ``None`` when the workflow keeps none."""
        with self._lock:
            if self._ledger is None and isinstance(self._ledger_arg, str):
                self._ledger = Ledger(self._ledger_arg)
            return self._ledger

    @property
    def ledger_url(self) -> str | None:
        """The ledger's URL, without opening (or creating) it; ``None`` when it keeps none."""
        if isinstance(self._ledger_arg, str):
            return self._ledger_arg
        return None if self._ledger is None else self._ledger.url

    def close(self) -> None:
        """Flush and close the ledger this meter opened from a URL (a given one is left open)."""
        with self._lock:
            opened = self._ledger if isinstance(self._ledger_arg, str) else None
            self._ledger = None if opened is not None else self._ledger
        if opened is not None:
            opened.close()

    def record(
        self, result: Result, request_id: str | None = None, *, caller: str | None = None
    ) -> None:
        """Append ``result``'s run and step rows (a new id when ``request_id`` is None).

        ``caller`` (the API key's name, when a server knows it) goes in every row's
        ``api_key_id``, so that spend can be summed per key.
        """
        ledger = self.ledger
        if ledger is not None:
            at = datetime.now(UTC)
            ledger.append(self.rows(result, request_id or uuid.uuid4().hex, at, caller=caller))

    # ------------------------------------------------------------------ rows
    def rows(
        self, result: Result, request_id: str, at: datetime, *, caller: str | None = None
    ) -> list[LedgerRow]:
        """The ledger rows of one run: its steps, then the run (``caller``: see ``record``)."""
        steps = [self._row(node, request_id, at, caller) for node in _worked(result.trace)]
        # A block used at two places runs its steps twice under the same paths (the block's
        # own, as in the file); each repeat gets "#2", "#3"... so no row overwrites another.
        seen: dict[str, int] = {}
        for i, row in enumerate(steps):
            seen[row.path] = seen.get(row.path, 0) + 1
            if seen[row.path] > 1:
                steps[i] = replace(row, path=f"{row.path}#{seen[row.path]}")
        escalation = result.escalation
        run = LedgerRow(
            request_id=request_id, path="", workflow=self.workflow, step="", kind=RUN, at=at,
            tokens_in=sum(r.tokens_in for r in steps),
            tokens_out=sum(r.tokens_out for r in steps),
            latency_ms=result.latency_ms,
            compute_s=sum(r.compute_s for r in steps),
            cost_nusd=sum(r.cost_nusd for r in steps),
            decision=result.status,
            reason=None if escalation is None else f"{escalation.reason}: {escalation.why}",
            api_key_id=caller,
        )  # fmt: skip
        return [*steps, run]

    def _pricing(self, node: StepTrace) -> _Pricing:
        """How ``node`` is costed (``model`` is what its row shows)."""
        if node.kind == "skill":
            key = node.name
            if key not in self._skills and key.endswith(")") and " (" in key:
                key = key[key.rindex(" (") + 2 : -1]  # SkillStep names "id (skill)"
            pricing = self._skills.get(key)
            if pricing is not None:
                return pricing
        elif node.kind == "escalate" and node.output is not None:
            target = str(node.output.data.get("escalated_to", ""))
            pricing = self._backends.get(target)
            answered = self._by_model.get(str(node.output.data.get("model")))
            if pricing is not None and pricing.model in self._by_model and answered is not None:
                return answered  # a fallback may have answered: its own price
            if pricing is not None:
                return pricing
        return _Pricing("", False, self.machine)

    def skill_cost(
        self, skill: str, tokens_in: int, tokens_out: int, seconds: float,
        by_model: tuple[tuple[str, int, int], ...] = (),
    ) -> int:  # fmt: skip
        """Nano-dollars of one call to ``skill``, priced as its ledger rows are.

        ``by_model`` is the prediction's ``usage.by_model``: the tokens of each model that
        answered, priced at that model's price when it is one of the skill's fallbacks.
        """
        return self.skill_priced(skill, by_model, tokens_in, tokens_out, seconds)[3]

    def skill_priced(
        self, skill: str, by_model: tuple[tuple[str, int, int], ...], tokens_in: int,
        tokens_out: int, seconds: float,
    ) -> tuple[str, str | None, float, int]:  # fmt: skip
        """``(model, machine, compute_s, nano-dollars)`` of one call to ``skill``, for its row.

        ``model`` names the models that answered (see :meth:`skill_cost`); ``machine`` is
        ``None`` and ``compute_s`` 0.0 when the call is priced per token only.
        """
        return self._priced(self._skills[skill], by_model, tokens_in, tokens_out, seconds)

    def _answered(
        self, pricing: _Pricing, by_model: tuple[tuple[str, int, int], ...]
    ) -> list[tuple[_Pricing, int, int]] | None:
        """Each model that answered a call to a remote ``pricing`` with its tokens, or ``None``.

        ``None`` when the call is not remote or did not say which models answered (then
        the configured model's price applies), or when a model that answered is not one
        this meter priced (it cannot be a fallback of the skill).
        """
        if pricing.model not in self._by_model or not by_model:
            return None
        if any(model not in self._by_model for model, _, _ in by_model):
            return None
        return [(self._by_model[model], i, o) for model, i, o in by_model]

    def _priced(
        self, pricing: _Pricing, by_model: tuple[tuple[str, int, int], ...], tokens_in: int,
        tokens_out: int, seconds: float,
    ) -> tuple[str, str | None, float, int]:  # fmt: skip
        """``(model, machine, compute_s, nano-dollars)`` of a call, for its ledger row.

        A skill whose remote backend failed over is priced by the models that answered
        (``by_model``), each model's tokens at its price. When several answered and one
        of them is priced by machine time, the call's whole time is charged on that
        machine, since the time is not split between models: that overstates the cost
        rather than hiding it.
        """
        parts = self._answered(pricing, by_model)
        if parts is None:
            parts = [(pricing, tokens_in, tokens_out)]
        model = ", ".join(p.model for p, _, _ in parts)
        cost = sum(
            (self.prices.token_cost(p.model, i, o) for p, i, o in parts if p.per_token),
            start=Decimal(0),
        )
        timed = [p for p, _, _ in parts if not p.per_token]
        if not timed:
            return model, None, 0.0, to_nano(cost)
        machine = timed[0].machine or self.machine
        cost += self.prices.compute_cost(machine, seconds)
        return model, machine, seconds, to_nano(cost)

    def backend_cost(
        self, name: str, tokens_in: int, tokens_out: int, seconds: float,
        by_model: tuple[tuple[str, int, int], ...] = (),
    ) -> int:  # fmt: skip
        """Nano-dollars of one call to the backend ``name``, priced as its rows are.

        ``by_model``: as for :meth:`skill_cost` (a fallback that answered, at its price).
        """
        pricing = self._backends[name]
        return self._priced(pricing, by_model, tokens_in, tokens_out, seconds)[3]

    def _row(self, node: StepTrace, request_id: str, at: datetime, caller: str | None) -> LedgerRow:
        kids = node.children
        tokens_in = max(0, node.usage.input_tokens - sum(c.usage.input_tokens for c in kids))
        tokens_out = max(0, node.usage.output_tokens - sum(c.usage.output_tokens for c in kids))
        latency = max(0.0, node.latency_ms - sum(c.latency_ms for c in kids))
        # A skill's own usage says which models answered it (a fallback may have).
        by_model = node.usage.by_model if node.kind == "skill" and not kids else ()
        model, machine, seconds, cost = self._priced(
            self._pricing(node), by_model, tokens_in, tokens_out, latency / 1000
        )
        decision = node.decision
        return LedgerRow(
            request_id=request_id, path=node.path, workflow=self.workflow, step=node.name,
            kind=node.kind, at=at, model=model, machine=machine, tokens_in=tokens_in,
            tokens_out=tokens_out, latency_ms=latency, compute_s=seconds, cost_nusd=cost,
            decision=None if decision is None else decision.taken,
            reason=None if decision is None else decision.why, api_key_id=caller,
        )  # fmt: skip


def _worked(trace: list[StepTrace]) -> Iterator[StepTrace]:
    """The nodes that did work (no children) or decided something, depth first."""
    for root in trace:
        for node in root.walk():
            if not node.children or node.decision is not None:
                yield node


def meter_for(
    workflow: str,
    *,
    skills: Mapping[str, object],
    backends: Mapping[str, object],
    ledger: Ledger | str | None,
    prices: PricesArg,
    machine: str | None,
) -> Meter | None:
    """A :class:`Meter`, or ``None`` when there is nothing to record or to price."""
    remote = any(remote_models(o) for o in (*skills.values(), *backends.values()))
    if ledger is None and prices is None and machine is None and not remote:
        return None
    return Meter(
        workflow, skills=skills, backends=backends, ledger=ledger, prices=prices, machine=machine
    )


__all__ = ["LOCAL_RUNTIMES", "Meter", "meter_for", "remote_models", "spec_prices"]
