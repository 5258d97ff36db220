"""Compliance flagging with evidence: rule packs, the checker, field rules, reports.

Example:
    >>> from slmstack.compliance import load_pack
    >>> load_pack("nda").rules[0].id
    'nda-1'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slmstack.compliance.data import ContractDoc, read_contractnli, segment
from slmstack.compliance.fields import check_fields
from slmstack.compliance.rules import FieldRule, NLIRule, RulePack, load_pack, parse_pack

if TYPE_CHECKING:
    from slmstack.compliance.checker import ComplianceChecker


def __getattr__(name: str) -> Any:
    # The checker needs torch (through the encoder); packs and field rules do not.
    if name == "ComplianceChecker":
        from slmstack.compliance.checker import ComplianceChecker

        return ComplianceChecker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ComplianceChecker",
    "ContractDoc",
    "FieldRule",
    "NLIRule",
    "RulePack",
    "check_fields",
    "load_pack",
    "parse_pack",
    "read_contractnli",
    "segment",
]
