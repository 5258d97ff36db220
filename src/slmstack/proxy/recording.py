"""From a captured exchange to its two stored rows: the traffic row and the ledger row.

Tokens come from the upstream's usage; without one (a stream the client did not ask
usage for), from the proxy's tokenizer when it has one (``tokens_source="counted"``:
the messages' texts, which leaves out the chat template's few tokens); otherwise they are
``missing`` and the cost is ``no_usage``. A model the price table does not know costs
``unpriced``: both are recorded as such, with the reason, never as a silent $0. A model
priced by machine time (``{my-llm: {machine: gpu-l4}}``) costs its latency on that
machine.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

from slmstack.costs.ledger import LedgerRow
from slmstack.costs.prices import PriceTable, to_nano
from slmstack.errors import ConfigError
from slmstack.proxy.exchange import Exchange, Parsed, message_text, parse
from slmstack.proxy.masking import Masker
from slmstack.proxy.shadow import Shadow, ShadowRow
from slmstack.proxy.traffic import TrafficRow

WORKFLOW = "proxy"  # the ledger's workflow column for proxied calls
_SYSTEM = ("system", "developer")  # the roles of a system prompt (developer: OpenAI's new name)
_NO_USAGE = (
    "the answer carried no usage; ask for it (stream_options.include_usage) or start the "
    "proxy with --tokenizer to count tokens"
)
KIND = "llm"  # the ledger's step kind (not "run": the spend reports count step rows)


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
    """Mask, in place and in one batch, every message text and answer of ``parsed``."""
    if masker is None:
        return
    slots: list[tuple[Any, Any]] = []  # (container, key) of each text to replace
    texts: list[str] = []
    for p in parsed:
        for m in p.messages:
            content = m.get("content")
            if isinstance(content, str):
                slots.append((m, "content"))
                texts.append(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        slots.append((part, "text"))
                        texts.append(part["text"])
        slots.append((p, None))
        texts.append(p.response_text)
    for (holder, key), masked in zip(slots, masker.mask_many(texts), strict=True):
        if key is None:
            holder.response_text = masked
        else:
            holder[key] = masked


def _tokens(p: Parsed, pricing: Pricing) -> tuple[int, int, str]:
    """``(tokens in, tokens out, source)``: the upstream's usage, counted, or missing."""
    if p.usage is not None:
        return p.usage["prompt_tokens"], p.usage["completion_tokens"], "upstream"
    count = pricing.count_tokens
    if count is not None and p.messages:
        return sum(count(message_text(m)) for m in p.messages), count(p.response_text), "counted"
    return 0, 0, "missing"


class Recorded(NamedTuple):
    """What one batch of exchanges writes: traffic and ledger rows, and shadow comparisons."""

    rows: list[tuple[TrafficRow, LedgerRow]]
    shadow: list[ShadowRow]


def _system_and_user(p: Parsed) -> tuple[str, str]:
    system = "\n".join(message_text(m) for m in p.messages if m.get("role") in _SYSTEM)
    user = next((message_text(m) for m in reversed(p.messages) if m.get("role") == "user"), "")
    return system, user


def _compared(
    exchanges: Sequence[Exchange], parsed: Sequence[Parsed], ids: Sequence[str],
    shadow: Shadow, masker: Masker | None,
) -> list[ShadowRow]:  # fmt: skip
    """The students' comparisons, on the clear text, then masked like the traffic."""
    calls = [(rid, datetime.fromtimestamp(ex.started, UTC), *_system_and_user(p), p.response_text)
             for ex, p, rid in zip(exchanges, parsed, ids, strict=True)
             if ex.status == 200 and p.problem is None]  # fmt: skip
    rows = shadow.compare(calls)
    if masker is None or not rows:
        return rows
    texts = masker.mask_many([t for r in rows for t in (r.llm_answer, r.student_answer)])
    return [replace(r, llm_answer=texts[2 * i], student_answer=texts[2 * i + 1])
            for i, r in enumerate(rows)]  # fmt: skip


def build_rows(
    exchanges: Sequence[Exchange],
    *,
    pricing: Pricing,
    masker: Masker | None = None,
    shadow: Shadow | None = None,
) -> Recorded:
    """The traffic and ledger rows of each exchange, and the shadow's comparisons.

    Everything stored is masked when ``masker`` is set; the ``shadow`` students see the
    clear text, as they would in production.
    """
    parsed = [parse(ex) for ex in exchanges]
    ids = [uuid.uuid4().hex for _ in exchanges]
    compared = [] if shadow is None else _compared(exchanges, parsed, ids, shadow, masker)
    _masked_texts(parsed, masker)
    out = []
    for ex, p, request_id in zip(exchanges, parsed, ids, strict=True):
        at = datetime.fromtimestamp(ex.started, UTC)
        problem = ex.error or p.problem
        t_in, t_out, source = _tokens(p, pricing)
        if ex.status != 200:  # refused or unreachable: nothing was generated, nothing is billed
            nusd, status, reason = 0, "failed", problem
        elif source == "missing":
            nusd, status, reason = 0, "no_usage", _NO_USAGE
        else:
            nusd, status, reason = price(pricing, p, t_in, t_out, ex.latency_ms)
        system, user = _system_and_user(p)
        fingerprint = key_fingerprint(ex.authorization)
        traffic = TrafficRow(
            request_id=request_id, at=at, model=p.model, status=ex.status, stream=p.stream,
            system=system, user=user, messages=json.dumps(p.messages, ensure_ascii=False),
            params=json.dumps(p.params, ensure_ascii=False), response=p.response_text,
            tokens_in=t_in, tokens_out=t_out, tokens_source=source,
            latency_ms=ex.latency_ms, ttfb_ms=ex.ttfb_ms, cost_nusd=nusd, cost_status=status,
            masked=masker is not None, response_model=p.response_model,
            finish_reason=p.finish_reason, upstream_id=p.upstream_id, api_key_id=fingerprint,
            problem=problem,
        )  # fmt: skip
        ledger = LedgerRow(
            request_id=request_id, path=KIND, workflow=WORKFLOW, step=ex.path, kind=KIND, at=at,
            model=pricing.price_as or p.model, tokens_in=t_in, tokens_out=t_out,
            latency_ms=ex.latency_ms, cost_nusd=nusd, decision=status,
            reason=reason if reason else problem, api_key_id=fingerprint,
        )  # fmt: skip
        out.append((traffic, ledger))
    return Recorded(out, compared)


__all__ = ["KIND", "WORKFLOW", "Pricing", "Recorded", "build_rows", "key_fingerprint", "price"]
