"""Costs: a versioned price table, an append-only ledger of runs and steps, spend reports.

Example:
    >>> from slmstack.costs import load_prices
    >>> load_prices().model("gpt-4").input_per_1k
    Decimal('0.03')
"""

from slmstack.costs.ledger import GROUPS, Ledger, LedgerRow, SpendSums
from slmstack.costs.prices import (
    MachinePrice,
    ModelPrice,
    PriceTable,
    from_nano,
    load_prices,
    packaged_prices,
    to_nano,
)
from slmstack.costs.report import SpendReport, SpendRow, report_html, spend_report

__all__ = [
    "GROUPS",
    "Ledger",
    "LedgerRow",
    "MachinePrice",
    "ModelPrice",
    "PriceTable",
    "SpendReport",
    "SpendRow",
    "SpendSums",
    "from_nano",
    "load_prices",
    "packaged_prices",
    "report_html",
    "spend_report",
    "to_nano",
]
