"""Spend reports from the ledger: a table, and a self-contained HTML page with plots.

The method: the ledger sums its step rows in SQL (integer nano-dollars, so totals are
exact), grouped by workflow, step, model or day over a period of UTC days. Beside each
group stands the "all to the LLM" counterfactual: the same tokens priced at a named
LLM's list prices (GPT-4 by default, the price users quote). It is an estimate, and says
so: the LLM's tokenizer counts a text differently, and one LLM call may replace several
skills that each read the same text (the counterfactual then counts those tokens again).

The HTML page has no external resource: styles inline, plots drawn with matplotlib (the
``report`` extra) and embedded as base64 PNGs, so the file can be mailed or archived.

Example:
    >>> from slmstack.costs import Ledger, spend_report, report_html
    >>> report = spend_report(Ledger("sqlite:///ledger.db", create=False), by="day")
    ... # doctest: +SKIP
    >>> Path("spend.html").write_text(report_html(report), encoding="utf-8")  # doctest: +SKIP
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from slmstack.costs.html import CSS, new_figure, png_base64
from slmstack.costs.ledger import Ledger, SpendSums
from slmstack.costs.prices import NANO, PriceTable, load_prices
from slmstack.errors import ConfigError


@dataclass(frozen=True)
class SpendRow:
    """One group of a report: what the stack spent, and what the LLM would have.

    Attributes:
        key: the workflow, ``"workflow: step"``, model or day.
        requests: distinct request ids; steps: step rows.
        tokens_in, tokens_out: tokens of those steps.
        cost: dollars spent, exact.
        compute_s: seconds of machine time priced.
        llm_cost: the same tokens at ``compare_to``'s prices (``None`` without one).
        unknown_cost: step rows recorded at $0 because their cost is not known (a model
            without a price, a response without token usage): ``cost`` leaves them out.
    """

    key: str
    requests: int
    steps: int
    tokens_in: int
    tokens_out: int
    cost: Decimal
    compute_s: float
    llm_cost: Decimal | None
    unknown_cost: int = 0

    @property
    def saving(self) -> Decimal | None:
        """``llm_cost - cost``."""
        return None if self.llm_cost is None else self.llm_cost - self.cost


@dataclass(frozen=True)
class SpendReport:
    """Spend over a period, grouped, with its total and the prices it was compared at."""

    by: str
    since: date | None
    until: date | None
    rows: list[SpendRow]
    total: SpendRow
    compare_to: str | None
    prices_version: str
    daily: list[SpendRow]

    def to_dict(self) -> dict[str, Any]:
        """JSON view; money as strings, so that no float creeps in."""

        def row(r: SpendRow) -> dict[str, Any]:
            return {
                "key": r.key, "requests": r.requests, "steps": r.steps,
                "tokens_in": r.tokens_in, "tokens_out": r.tokens_out, "cost_usd": usd(r.cost),
                "compute_s": round(r.compute_s, 6),
                "llm_cost_usd": None if r.llm_cost is None else usd(r.llm_cost),
                "unknown_cost_steps": r.unknown_cost,
            }  # fmt: skip

        return {
            "by": self.by,
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "compare_to": self.compare_to,
            "prices": self.prices_version,
            "rows": [row(r) for r in self.rows],
            "total": row(self.total),
        }


def spend_report(
    ledger: Ledger,
    *,
    by: str = "workflow",
    since: date | None = None,
    until: date | None = None,
    compare_to: str | None = "gpt-4",
    prices: PriceTable | None = None,
) -> SpendReport:
    """Spend over ``since``..``until`` (inclusive UTC days) grouped ``by``.

    Args:
        ledger: the ledger to read.
        by: ``"workflow"``, ``"step"``, ``"model"`` or ``"day"``.
        since: the first day of the period; open-ended when ``None``.
        until: the last day of the period; open-ended when ``None``.
        compare_to: the LLM whose prices the counterfactual uses; ``None`` for none.
        prices: the price table (by default the packaged one and ``$SLMSTACK_PRICES``).

    Raises:
        ConfigError: an unknown grouping, a period that ends before it starts, or a
            ``compare_to`` model with no token price.
    """
    if since is not None and until is not None and until < since:
        raise ConfigError(f"the period ends ({until}) before it starts ({since}); swap them")
    table = prices if prices is not None else load_prices()
    if compare_to is not None:
        table.token_cost(compare_to, 0, 0)  # fails early, naming the model, when unpriced

    def row(s: SpendSums) -> SpendRow:
        llm = (
            None if compare_to is None else table.token_cost(compare_to, s.tokens_in, s.tokens_out)
        )
        # steps that call no model (routes, templates, merges) have an empty model name
        key = s.key or (NO_MODEL if by == "model" else s.key)
        return SpendRow(
            key, s.requests, s.steps, s.tokens_in, s.tokens_out, s.cost, s.compute_s, llm,
            s.unknown_cost,
        )  # fmt: skip

    groups = ledger.spend(by, since=since, until=until)  # type: ignore[arg-type]
    daily = groups if by == "day" else ledger.spend("day", since=since, until=until)
    return SpendReport(
        by=by,
        since=since,
        until=until,
        rows=[row(g) for g in groups],
        total=row(ledger.total(since=since, until=until)),
        compare_to=compare_to,
        prices_version=table.version,
        daily=[row(g) for g in daily],
    )


def money(amount: Decimal) -> str:
    """Dollars for people: cents above a dollar, more digits below (``$0.000123``)."""
    if amount == 0:
        return "$0"
    if abs(amount) >= 1:
        return f"${amount:,.2f}"
    if abs(amount) >= Decimal("0.000001"):
        return "$" + f"{amount:.6f}".rstrip("0").rstrip(".")
    return f"${amount:.2e}"


NO_MODEL = "(no model: routes, templates)"


def usd(amount: Decimal) -> str:
    """Dollars for machines: fixed point to the nano-dollar (``"0.000001092"``).

    Never ``"0E-9"`` or an exponent.
    """
    return format(amount.quantize(NANO), "f")


def times(factor: Decimal) -> str:
    """``"1,234× cheaper"``, ``"1.4× cheaper"``, or ``"170× dearer"`` below 1."""
    if factor >= 1:
        return f"{factor:,.1f}× cheaper" if factor < 10 else f"{factor:,.0f}× cheaper"
    inverse = 1 / factor
    return f"{inverse:,.1f}× dearer" if inverse < 10 else f"{inverse:,.0f}× dearer"


def unknown_note(steps: int) -> str:
    """What a report says of ``steps`` LLM calls of unknown cost (``""`` for none)."""
    if not steps:
        return ""
    return (
        f"{steps} recorded LLM call{' was' if steps == 1 else 's were'} of unknown cost (a "
        "model with no price, or a response without token usage): recorded at $0, they are "
        "not in the costs shown, and no price given now can cost them. Price the model where "
        "the proxy reads its prices (its --prices) so that later calls are costed, and ask "
        "the API for usage"
    )


def ratio(report_row: SpendRow) -> str:
    """How the row compares with the LLM (``"1,234× cheaper"``, ``"3.2× dearer"``).

    ``"–"`` when either side costs nothing (or the LLM is not priced).
    """
    if not report_row.llm_cost or report_row.cost == 0:
        return "–"
    return times(report_row.llm_cost / report_row.cost)


# ---------------------------------------------------------------------- HTML
def report_html(report: SpendReport) -> str:
    """The report as one self-contained HTML page (inline styles, plots as base64 PNG).

    Raises:
        MissingDependencyError: matplotlib (the ``report`` extra) is not installed.
    """
    plots = _plots(report)
    llm = report.compare_to
    head = ["", "requests", "steps", "tokens in", "tokens out", "compute s", "cost"]
    if llm:
        head += [f"all to {llm}", "stack"]

    def cells(r: SpendRow) -> str:
        values = [r.key, f"{r.requests:,}", f"{r.steps:,}", f"{r.tokens_in:,}",
                  f"{r.tokens_out:,}", f"{r.compute_s:,.3f}", money(r.cost)]  # fmt: skip
        if llm and r.llm_cost is not None:
            values += [money(r.llm_cost), ratio(r)]
        return "".join(f"<td>{html.escape(v)}</td>" for v in values)

    period = f"{report.since or 'the first row'} to {report.until or 'the last row'}"
    body = "\n".join(f"<tr>{cells(r)}</tr>" for r in report.rows)
    images = "\n".join(
        f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" '
        f'src="data:image/png;base64,{data}">'
        for title, data in plots
    )
    note = (
        f"“All to {html.escape(llm)}” prices the same tokens at {html.escape(llm)}'s list "
        "prices: an estimate (its tokenizer counts differently, and one call may replace "
        "several skills that each read the text)."
        if llm
        else ""
    )
    unknown = unknown_note(report.total.unknown_cost)
    warning = f'<p class="warning">Warning: {html.escape(unknown)}.</p>' if unknown else ""
    versus = ""
    if llm and report.total.llm_cost is not None:
        versus = f"· all to {html.escape(llm)}: {html.escape(money(report.total.llm_cost))}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>slmstack spend by {html.escape(report.by)}</title><style>{CSS}</style></head>
<body>
<h1>Spend by {html.escape(report.by)}</h1>
<p>{html.escape(period)} (UTC days) · {report.total.requests:,} requests ·
total {html.escape(money(report.total.cost))}
{versus}</p>
{warning}
<table><thead><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in head)}</tr></thead>
<tbody>
{body}
</tbody>
<tfoot><tr>{cells(report.total)}</tr></tfoot></table>
{images}
<p class="note">{note} Prices: {html.escape(report.prices_version)}.</p>
</body></html>
"""


def _plots(report: SpendReport) -> list[tuple[str, str]]:
    """(title, base64 PNG) of spend per group and spend per day, against the LLM's."""
    out = []
    charts = [(f"Spend by {report.by}", report.rows)]
    if report.by != "day":
        charts.append(("Spend by day", report.daily))
    for title, rows in charts:
        if not rows:
            continue
        size = (9, 0.45 * len(rows) + 1.6) if report.by != "day" else (9, 3.5)
        fig = new_figure(size, "The HTML cost report")
        ax = fig.add_subplot()
        keys = [r.key for r in rows]
        # float only for drawing: the page's figures come from the exact Decimals.
        stack = [float(r.cost) for r in rows]
        # Log scale: the stack and the LLM differ by orders of magnitude, and a linear
        # axis would draw the stack as a flat line at zero.
        llm = [float(r.llm_cost or 0) for r in rows] if report.compare_to else []
        log = any(v > 0 for v in [*stack, *llm])
        if title == "Spend by day":
            ax.plot(keys, stack, marker="o", label="slmstack")
            if llm:
                ax.plot(keys, llm, marker="o", label=f"all to {report.compare_to}")
            ax.set_ylabel("US$ per day" + (" (log scale)" if log else ""))
            ax.tick_params(axis="x", labelrotation=45)
            if log:
                ax.set_yscale("log")
        else:
            pos = list(range(len(rows)))
            ax.barh([p + 0.2 for p in pos], stack, height=0.4, label="slmstack")
            if llm:
                ax.barh(
                    [p - 0.2 for p in pos], llm, height=0.4, label=f"all to {report.compare_to}"
                )
            ax.set_yticks(pos, keys)
            ax.invert_yaxis()  # the table's order, top to bottom
            ax.set_xlabel("US$" + (" (log scale)" if log else ""))
            if log:
                ax.set_xscale("log")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        out.append((title, png_base64(fig)))
    return out


__all__ = [
    "SpendReport",
    "SpendRow",
    "money",
    "ratio",
    "report_html",
    "spend_report",
    "unknown_note",
]
