"""From a captured exchange to its two stored rows: the traffic row and the ledger row.

Tokens come from the upstream's usage; without one (a stream the client did not ask
usage for), from the proxy's tokenizer when it has one (``tokens_source="counted"``:
the messages' texts, which leaves out the chat template's few tokens); otherwise they are
``missing`` and the cost is ``no_usage``. A model the price table does not know costs
``unpriced``: both are recorded as such, with the reason, never as a silent $0. A model
priced by machine time (``{my-llm: {machine: gpu-l4}}``) costs its latency on that
machine.

A call of a served task carries its :class:`Route`. A student's answer is a traffic row
like any other (``answered_by="student"``, the LLM cost 0, tokens counted by the
proxy's tokenizer or missing) and a ledger row of kind ``student``; a call the student
was unsure of went to the LLM (``cascade``) and its ledger reason says why; the LLM call
that audits a student's answer is spend (a ledger row, path ``audit``) but not a
request of the app, so it has no traffic row. Calls of served tasks are compared with
the prediction made on the request path (the student is not asked twice).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, overload

from slmstack.costs.ledger import LLM_CALL, LedgerRow
from slmstack.costs.prices import PriceTable, to_nano
from slmstack.errors import ConfigError
from slmstack.proxy.exchange import Exchange, Parsed, message_text, parse
from slmstack.proxy.masking import Masker
from slmstack.proxy.shadow import Known, Shadow, ShadowRow
from slmstack.proxy.traffic import TrafficRow

WORKFLOW = "proxy"  # the ledger's workflow column for proxied calls
_SYSTEM = ("system", "developer")  # the roles of a system prompt (developer: OpenAI's new name)
_NO_USAGE = (
    "the answer carried no usage; ask for it (stream_options.include_usage) or start the "
    "proxy with --tokenizer to count tokens"
)
KIND = LLM_CALL  # the ledger's step kind (not "run": the spend reports count step rows)
STUDENT = "student"  # the ledger's path and kind of a student's answer
AUDIT = "audit"  # the ledger's path of an audit's LLM call


@dataclass(frozen=True)
class Route:
    """How the proxy answered a call of a served task (see :mod:`slmstack.proxy.serving`).

    Attributes:
        role: ``student`` (the student answered), ``cascade`` (it was unsure: the LLM
            answered) or ``audit`` (the LLM asked afterwards about a student's answer).
        request_id: the call's id; an audit's is the id of the answer it checks.
        task_id: the served task.
        prediction: the student's, or ``None`` when it failed (the call then cascades).
        student_ms: the student's time on the call.
        why: the decision, for the ledger's reason
            (``confidence 0.412 < threshold 0.800``).
    """

    role: Literal["student", "cascade", "audit"]
    request_id: str
    task_id: str
    prediction: Any
    student_ms: float
    why: str


@dataclass(frozen=True)
class Pricing:
    """How the proxy prices calls.

    Attributes:
        prices: the price table.
        price_as: price every call as this model (what the traffic would cost at GPT-4's
            prices, say); ``None`` prices each call by the model it names.
        count_tokens: counts a text's tokens, for answers without usage; ``None``: none.
    """

    prices: PriceTable
    price_as: str | None = None
    count_tokens: Callable[[str], int] | None = None


def key_fingerprint(authorization: str | None) -> str | None:
    """``key-`` and 12 hex digits of the SHA-256 of the client's key: who, never the key."""
    if not authorization:
        return None
    secret = authorization.removeprefix("Bearer ").strip()
    return "key-" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def price(
    pricing: Pricing, parsed: Parsed, t_in: int, t_out: int, latency_ms: float
) -> tuple[int, str, str | None]:
    """``(nano-dollars, cost_status, reason)`` of one call."""
    names = [pricing.price_as] if pricing.price_as else [parsed.model, parsed.response_model]
    table = pricing.prices
    model = next((n for n in names if n and n in table.models), None)
    if model is None:
        return (
            0,
            "unpriced",
            (
                f"model {parsed.model or parsed.response_model or '(none)'!r} has no price in "
                f"the price table ({table.version}); add it (slmstack proxy --prices FILE), "
                "or price every call as one model with --price-as"
            ),
        )
    entry = table.model(model)
    try:
        if entry.machine is not None:
            return to_nano(table.compute_cost(entry.machine, latency_ms / 1000)), "priced", None
        return to_nano(table.token_cost(model, t_in, t_out)), "priced", None
    except ConfigError as exc:
        return 0, "unpriced", str(exc)


def _masked_texts(parsed: Sequence[Parsed], masker: Masker | None) -> None:
    """Mask, in place and in one batch, every text of ``parsed`` that is stored.

    Message texts and names, tool-call arguments, string parameters, the answer, and the
    problem (a stream's error event may quote the request).
    """
    if masker is None:
        return
    slots: list[tuple[Any, Any]] = []  # (container, key) of each text to replace
    texts: list[str] = []
    for p in parsed:
        for m in p.messages:
            if isinstance(m.get("name"), str):  # a participant's name: often a person's
                slots.append((m, "name"))
                texts.append(m["name"])
            content = m.get("content")
            if isinstance(content, str):
                slots.append((m, "content"))
                texts.append(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        slots.append((part, "text"))
                        texts.append(part["text"])
            calls = m.get("tool_calls")
            for call in calls if isinstance(calls, list) else []:  # what an assistant sent a tool
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    slots.append((function, "arguments"))
                    texts.append(function["arguments"])
        _string_leaves(p.params, slots, texts)  # `user`, `metadata` and the like
        slots.append((p, "response_text"))
        texts.append(p.response_text)
        if p.problem:
            slots.append((p, "problem"))
            texts.append(p.problem)
    for (holder, key), masked in zip(slots, masker.mask_many(texts), strict=True):
        if isinstance(holder, dict):
            holder[key] = masked
        else:
            setattr(holder, key, masked)


def _string_leaves(value: Any, slots: list[tuple[Any, Any]], texts: list[str]) -> None:
    """Every string inside ``value`` (dicts and lists, nested), as ``(container, key)``."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in list(items):
        if isinstance(item, str):
            slots.append((value, key))
            texts.append(item)
        elif isinstance(item, dict | list):
            _string_leaves(item, slots, texts)


def _tokens(p: Parsed, pricing: Pricing) -> tuple[int, int, str]:
    """``(tokens in, tokens out, source)``: the upstream's usage, counted, or missing."""
    if p.usage is not None:
        return p.usage["prompt_tokens"], p.usage["completion_tokens"], "upstream"
    count = pricing.count_tokens
    if count is not None and p.messages:
        return sum(count(message_text(m)) for m in p.messages), count(p.response_text), "counted"
    return 0, 0, "missing"


class Recorded(NamedTuple):
    """What one batch of exchanges writes: traffic and ledger rows, and shadow comparisons.

    An audit has no traffic row (``None``): it is spend, not a request of the app.
    """

    rows: list[tuple[TrafficRow | None, LedgerRow]]
    shadow: list[ShadowRow]


def system_and_user(p: Parsed) -> tuple[str, str]:
    """The system prompt(s) of a call, joined, and its last user message."""
    system = "\n".join(message_text(m) for m in p.messages if m.get("role") in _SYSTEM)
    user = next((message_text(m) for m in reversed(p.messages) if m.get("role") == "user"), "")
    return system, user


def _known(route: Route | None) -> Known | None:
    if route is None or route.prediction is None:
        return None
    return Known(route.task_id, route.prediction, route.student_ms, route.role)


def _compared(
    exchanges: Sequence[Exchange], parsed: Sequence[Parsed], ids: Sequence[str],
    routes: Sequence[Route | None], shadow: Shadow, masker: Masker | None,
) -> list[ShadowRow]:  # fmt: skip
    """The students' comparisons, on the clear text, then masked like the traffic."""
    calls, known = [], []
    for ex, p, rid, route in zip(exchanges, parsed, ids, routes, strict=True):
        if ex.status != 200 or ex.error is not None or p.problem is not None:
            continue  # no whole answer (refused, cut short, unreadable): nothing to compare
        if p.finish_reason == "length":
            continue  # cut at max_tokens: a student's whole answer would not match the cut
        if route is not None and (route.role == "student" or route.prediction is None):
            continue  # the student's own answer, or a student that failed: nothing to compare
        calls.append((rid, datetime.fromtimestamp(ex.started, UTC), *system_and_user(p),
                      p.response_text))  # fmt: skip
        known.append(_known(route))
    rows = shadow.compare(calls, known)
    if masker is None or not rows:
        return rows
    texts = masker.mask_many([t for r in rows for t in (r.llm_answer, r.student_answer)])
    return [replace(r, llm_answer=texts[2 * i], student_answer=texts[2 * i + 1])
            for i, r in enumerate(rows)]  # fmt: skip


def _cost(
    ex: Exchange, p: Parsed, route: Route | None, pricing: Pricing, tokens: tuple[int, int, str]
) -> tuple[int, str, str | None]:
    """``(nano-dollars, cost_status, reason)`` of one call, as :func:`build_rows` records it."""
    t_in, t_out, source = tokens
    if route is not None and route.role == "student":
        return 0, "priced", route.why  # no LLM was called: its cost is known, and nil
    if ex.status != 200:  # refused or unreachable: nothing was generated, nothing is billed
        nusd, status, reason = 0, "failed", ex.error or p.problem
    elif source == "missing":
        nusd, status, reason = 0, "no_usage", _NO_USAGE
    else:
        nusd, status, reason = price(pricing, p, t_in, t_out, ex.latency_ms)
    if route is not None:
        why = f"{route.role} of task {route.task_id}: {route.why}"
        reason = f"{why}; {reason}" if reason else why
    return nusd, status, reason


def build_rows(
    exchanges: Sequence[Exchange],
    *,
    pricing: Pricing,
    masker: Masker | None = None,
    shadow: Shadow | None = None,
    routes: Sequence[Route | None] | None = None,
) -> Recorded:
    """The traffic and ledger rows of each exchange, and the shadow's comparisons.

    Everything stored is masked when ``masker`` is set; the ``shadow`` students see the
    clear text, as they would in production. ``routes``: each exchange's :class:`Route`
    when it is a served task's call (see the module), else ``None``.
    """
    routes = list(routes) if routes is not None else [None] * len(exchanges)
    parsed = [parse(ex) for ex in exchanges]
    ids = [r.request_id if r is not None else uuid.uuid4().hex for r in routes]
    compared = [] if shadow is None else _compared(exchanges, parsed, ids, routes, shadow, masker)
    tasks = {r.request_id: r.task_id for r in compared}
    _masked_texts(parsed, masker)
    out: list[tuple[TrafficRow | None, LedgerRow]] = []
    for ex, p, request_id, route in zip(exchanges, parsed, ids, routes, strict=True):
        at = datetime.fromtimestamp(ex.started, UTC)
        problem = ex.error or p.problem
        t_in, t_out, source = _tokens(p, pricing)
        by_student = route is not None and route.role == "student"
        if by_student and source == "upstream":
            source = "counted"  # the usage the proxy wrote into its own answer
        nusd, status, reason = _cost(ex, p, route, pricing, (t_in, t_out, source))
        fingerprint = key_fingerprint(ex.authorization)
        path, kind, model = KIND, KIND, pricing.price_as or p.model
        if route is not None and route.role == "student":
            path, kind, model = STUDENT, STUDENT, f"student:{route.task_id}"
        elif route is not None and route.role == "audit":
            path = AUDIT
        ledger = LedgerRow(
            request_id=request_id, path=path, workflow=WORKFLOW, step=_fit(ex.path, 300),
            kind=kind, at=at, model=_fit(model, 200), tokens_in=t_in, tokens_out=t_out,
            latency_ms=ex.latency_ms, cost_nusd=nusd, decision=STUDENT if by_student else status,
            reason=_fit(reason if reason else problem), api_key_id=fingerprint,
        )  # fmt: skip
        if route is not None and route.role == "audit":
            out.append((None, ledger))
            continue
        system, user = system_and_user(p)
        traffic = TrafficRow(
            request_id=request_id, at=at, model=_fit(p.model, 200), status=ex.status,
            stream=p.stream, system=_fit(system), user=_fit(user),
            messages=json.dumps(p.messages, ensure_ascii=False),  # JSON escapes NUL itself
            params=json.dumps(p.params, ensure_ascii=False), response=_fit(p.response_text),
            tokens_in=t_in, tokens_out=t_out, tokens_source=source,
            latency_ms=ex.latency_ms, ttfb_ms=ex.ttfb_ms, cost_nusd=nusd, cost_status=status,
            masked=masker is not None, response_model=_fit(p.response_model, 200),
            finish_reason=_fit(p.finish_reason, 64), upstream_id=_fit(p.upstream_id, 200),
            api_key_id=fingerprint, problem=_fit(problem),
            answered_by=STUDENT if by_student else "llm",
            task_id=route.task_id if route is not None else tasks.get(request_id),
        )  # fmt: skip
        out.append((traffic, ledger))
    return Recorded(out, compared)


@overload
def _fit(text: str, width: int | None = None) -> str: ...
@overload
def _fit(text: None, width: int | None = None) -> None: ...
def _fit(text: str | None, width: int | None = None) -> str | None:
    """``text`` as every database can store it: NUL shown as U+FFFD, cut to ``width``.

    PostgreSQL refuses NUL and over-long values; a client's 250-character model name or a
    NUL in a message must not stop the recording of every call after it.
    """
    if text is None:
        return None
    text = text.replace("\x00", "\ufffd")
    return text if width is None else text[:width]


__all__ = [
    "AUDIT", "KIND", "STUDENT", "WORKFLOW", "Pricing", "Recorded", "Route", "build_rows",
    "key_fingerprint", "price", "system_and_user",
]  # fmt: skip
