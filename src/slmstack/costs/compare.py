"""The break-even report: the SLM stack against sending every request to the LLM.

Method. Three costs, all exact (:class:`~decimal.Decimal` dollars):

* **all to the LLM**: each request at the LLM's list prices, for ``prompt_tokens`` in and
  ``completion_tokens`` out. By default the prompt is the request's own text as the
  ledger counted it at the stack's first step, plus a fixed prompt overhead (the
  instructions and label list a team's LLM prompt carries); both are options, because
  the right figures are the team's own prompts;
* **the SLM stack**: the mean cost of a run in the ledger, which already includes the
  requests that escalated to an LLM tier at that tier's price, so the measured
  escalation rate is priced in, not assumed;
* **training**: a one-off: each skill's training seconds (from its provenance) × the
  machine's hourly price, plus what the teacher cost when the skills were distilled.

From them: monthly cost at a volume per day, cost per 1M requests, and the break-even
volume: the number of requests after which the stack, training included, has cost less
than the LLM (training / (LLM per request − stack per request)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from slmstack.costs.ledger import RUN, LedgerRow
from slmstack.costs.prices import PriceTable
from slmstack.errors import DataError

DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class BreakEven:
    """The comparison, per request and per month, with the break-even volume."""

    workflow: str
    runs: int
    escalation_rate: float
    llm: str
    prompt_tokens: int
    completion_tokens: int
    llm_per_request: Decimal
    stack_per_request: Decimal
    training: Decimal
    requests_per_day: int

    @property
    def llm_per_million(self) -> Decimal:
        """All to the LLM, per 1M requests."""
        return self.llm_per_request * 1_000_000

    @property
    def stack_per_million(self) -> Decimal:
        """The stack, per 1M requests (training excluded)."""
        return self.stack_per_request * 1_000_000

    @property
    def llm_monthly(self) -> Decimal:
        """All to the LLM for a month at ``requests_per_day``."""
        return self.llm_per_request * self.requests_per_day * DAYS_PER_MONTH

    @property
    def stack_monthly(self) -> Decimal:
        """The stack for a month at ``requests_per_day`` (training excluded)."""
        return self.stack_per_request * self.requests_per_day * DAYS_PER_MONTH

    @property
    def break_even_requests(self) -> Decimal | None:
        """Requests after which the stack, training included, is cheaper; ``None``: never.

        The fewest ``n`` with ``training + n × stack < n × llm``: one request when there
        is no training to recover, and one past an exact tie (where both have cost alike).
        """
        saving = self.llm_per_request - self.stack_per_request
        if saving <= 0:
            return None
        return (self.training / saving).to_integral_value(rounding="ROUND_FLOOR") + 1

    @property
    def times_cheaper(self) -> Decimal | None:
        """LLM cost per request over the stack's (training excluded)."""
        if self.stack_per_request == 0:
            return None
        return self.llm_per_request / self.stack_per_request


def break_even(
    rows: Sequence[LedgerRow],
    *,
    workflow: str,
    prices: PriceTable,
    llm: str,
    requests_per_day: int,
    training: Decimal,
    prompt_overhead: int = 150,
    prompt_tokens: int | None = None,
    completion_tokens: int = 50,
) -> BreakEven:
    """Compare ``workflow``'s ledger ``rows`` with sending every request to ``llm``."""
    rows = [r for r in rows if r.workflow == workflow]
    # A run with no step (an empty input, answered before any skill) is left out, as
    # the spend report leaves it out: it would count as an escalation that cost nothing.
    stepped = {r.request_id for r in rows if r.kind != RUN}
    runs = [r for r in rows if r.kind == RUN and r.request_id in stepped]
    if not runs:
        raise DataError(
            f"the ledger has no runs of workflow {workflow!r}; run it with `ledger:` set "
            "(or pass the ledger it writes to) before comparing"
        )
    if requests_per_day < 1:
        raise DataError(f"requests per day must be at least 1; got {requests_per_day}")
    if prompt_tokens is None:
        prompt_tokens = _mean_first_step_tokens(rows, runs) + prompt_overhead
    llm_per_request = prices.token_cost(llm, prompt_tokens, completion_tokens)
    stack = sum((r.cost for r in runs), Decimal(0)) / len(runs)
    escalated = sum(1 for r in runs if r.decision == "escalated") / len(runs)
    return BreakEven(workflow, len(runs), escalated, llm, prompt_tokens, completion_tokens,
                     llm_per_request, stack, training, requests_per_day)  # fmt: skip


def _mean_first_step_tokens(rows: Sequence[LedgerRow], runs: Sequence[LedgerRow]) -> int:
    """Mean input tokens of each run's first costed step: the request's own length."""
    first: dict[str, int] = {}
    for r in rows:
        if r.kind != RUN and r.request_id not in first and r.tokens_in > 0:
            first[r.request_id] = r.tokens_in
    ids = [r.request_id for r in runs if r.request_id in first]
    return round(sum(first[i] for i in ids) / len(ids)) if ids else 0
