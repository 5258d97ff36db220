"""Prices: per-1k-token prices of hosted models and per-hour prices of machines.

The method: a versioned YAML table ships with the package (``costs/prices.yaml``: vendors'
list prices, each with its source, copied on the table's ``version`` date). A user's table
of the same shape extends it and overrides it entry by entry: first ``$SLMSTACK_PRICES``,
then a file or mapping passed explicitly (a workflow's ``prices:``). Amounts are
:class:`~decimal.Decimal` read from strings, never floats, so that a sum of a million costs
is exact. A model with no price is an error naming the model and how to add it, never a
silent $0: an unpriced model is the one mistake that makes every cost report wrong.

Two ways to cost a call, both exact before the one final rounding to nano-dollars:

- an API call: ``tokens_in × input_per_1k / 1000 + tokens_out × output_per_1k / 1000``;
- local compute (a small model in-process, or a model priced with ``machine:``):
  ``seconds × per_hour / 3600``.

Example:
    >>> from slmstack.costs import load_prices
    >>> prices = load_prices()
    >>> prices.token_cost("gpt-4", 1000, 500)
    Decimal('0.06')
    >>> prices.compute_cost("cpu-2vcpu", 3600.0)
    Decimal('0.08925')
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from slmstack.data.utf8 import read_utf8
from slmstack.data.yaml_lines import yaml_problem
from slmstack.errors import ConfigError

ENV = "SLMSTACK_PRICES"
NANO = Decimal("1e-9")  # the ledger stores integer nano-dollars (see costs/ledger.py)
_HOUR = Decimal(3600)
_THOUSAND = Decimal(1000)


def _money(value: Any) -> Any:
    """A YAML amount as an exact Decimal: ``"0.03"`` as written, a float by its shortest repr."""
    if isinstance(value, bool):
        raise ValueError("a price is a number, not true/false")
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


class _ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Dollars per 1,000 prompt / generated tokens. The bound (1,000 times the dearest API
    # of 2026) catches a price in the wrong unit before it overflows the ledger's sums.
    input_per_1k: Decimal | None = Field(default=None, ge=0, le=1000)
    output_per_1k: Decimal | None = Field(default=None, ge=0, le=1000)
    machine: str | None = None  # self-hosted: priced by the time spent on this machine
    source: str = ""  # where the figure comes from, and when

    _money = field_validator("input_per_1k", "output_per_1k", mode="before")(_money)


class _MachineEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_hour: Decimal = Field(ge=0, le=100_000)  # dollars per machine-hour, on demand
    source: str = ""

    _money = field_validator("per_hour", mode="before")(_money)


class _TableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str | None = None  # the date the prices were taken
    currency: str = "USD"
    default_machine: str | None = None
    models: dict[str, _ModelEntry] = Field(default_factory=dict)
    machines: dict[str, _MachineEntry] = Field(default_factory=dict)


@dataclass(frozen=True)
class ModelPrice:
    """The price of one model: per 1k tokens (an API), or by the time of a machine.

    Attributes:
        model: the model name, as the backend sends it (``"gpt-4o-mini"``).
        input_per_1k: dollars per 1,000 prompt tokens; ``None`` when priced by ``machine``.
        output_per_1k: dollars per 1,000 generated tokens.
        machine: a machine of the table; the model's calls cost their wall time on it.
        source: where the figure comes from.
    """

    model: str
    input_per_1k: Decimal | None = None
    output_per_1k: Decimal | None = None
    machine: str | None = None
    source: str = ""


@dataclass(frozen=True)
class MachinePrice:
    """The on-demand price of one machine-hour (a VM, or one GPU of a GPU instance)."""

    machine: str
    per_hour: Decimal
    source: str = ""


@dataclass(frozen=True)
class PriceTable:
    """Model and machine prices, merged from the packaged table and the user's.

    Build it with :func:`load_prices`. ``version`` names every table merged in, so a report
    says which prices it used (``"slmstack 2025-05-01 + prices.yaml"``).
    """

    models: Mapping[str, ModelPrice]
    machines: Mapping[str, MachinePrice]
    default_machine: str
    version: str
    currency: str = "USD"

    # ------------------------------------------------------------------ lookups
    def model(self, name: str) -> ModelPrice:
        """The price of ``name``, or :class:`ConfigError` naming the model and the fix."""
        price = self.models.get(name)
        if price is None:
            raise ConfigError(
                f"model {name!r} has no price in the price table ({self.version})"
                f"{_close(name, self.models)}; "
                f"add it to your price table (a YAML file given as `prices:` in the workflow "
                f"or as ${ENV}): `models: {{{name}: {{input_per_1k: '0.001', output_per_1k: "
                f"'0.002'}}}}`, or `{{{name}: {{machine: gpu-l4}}}}` for a model you serve "
                "yourself"
            )
        return price

    def machine(self, name: str) -> MachinePrice:
        """The price of machine ``name``, or :class:`ConfigError` naming it and the fix."""
        price = self.machines.get(name)
        if price is None:
            raise ConfigError(
                f"machine {name!r} has no price in the price table ({self.version})"
                f"{_close(name, self.machines)}; add it to your price table: "
                f"`machines: {{{name}: {{per_hour: '0.10'}}}}`"
            )
        return price

    # ------------------------------------------------------------------ costing
    def token_cost(self, model: str, tokens_in: int, tokens_out: int) -> Decimal:
        """Exact dollars for a call to ``model`` (which must be priced per token)."""
        price = self.model(model)
        if price.input_per_1k is None or price.output_per_1k is None:
            raise ConfigError(
                f"model {model!r} is priced by machine time ({price.machine}), not per token, "
                "so a count of tokens has no price at it (as `cost report --compare-to` and "
                "`cost compare --llm` need); name a model priced per token, or give "
                f"{model!r} input_per_1k and output_per_1k in your price table"
            )
        with localcontext() as ctx:
            ctx.prec = 50  # wide enough that nothing is rounded before the final rounding
            return (tokens_in * price.input_per_1k + tokens_out * price.output_per_1k) / _THOUSAND

    def compute_cost(self, machine: str, seconds: float) -> Decimal:
        """Exact dollars for ``seconds`` of ``machine`` (the float's exact binary value)."""
        if seconds < 0:
            raise ConfigError(f"compute time cannot be negative; got {seconds} s")
        with localcontext() as ctx:
            ctx.prec = 50
            return Decimal(seconds) * self.machine(machine).per_hour / _HOUR

    def merged(self, other: PriceTable) -> PriceTable:
        """A table of these entries and ``other``'s, ``other`` winning on equal names.

        Raises:
            ConfigError: the two tables are in different currencies (sums would mix them).
        """
        if other.currency.upper() != self.currency.upper():
            raise ConfigError(
                f"the price table {other.version} is in {other.currency}, the table it adds to "
                f"({self.version}) in {self.currency}: slmstack does not convert currencies, "
                f"and costs in both would be summed as one. Give every price in "
                f"{self.currency} (and `currency: {self.currency}`)"
            )
        return PriceTable(
            models={**self.models, **other.models},
            machines={**self.machines, **other.machines},
            default_machine=other.default_machine or self.default_machine,
            version=f"{self.version} + {other.version}",
            currency=self.currency,
        )

    def check(self) -> None:
        """Every ``machine:`` a model or the default names is priced; else ConfigError."""
        self.machine(self.default_machine)
        for price in self.models.values():
            if price.machine is not None and price.machine not in self.machines:
                raise ConfigError(
                    f"model {price.model!r} is priced by machine {price.machine!r}, which has no "
                    f"price in the table ({self.version}); add it under `machines:`"
                    + _close(price.machine, self.machines)
                )


def to_nano(dollars: Decimal) -> int:
    """Dollars as integer nano-dollars, rounded half to even (the ledger's unit)."""
    return int(dollars.quantize(NANO, rounding=ROUND_HALF_EVEN).scaleb(9))


def from_nano(nano: int) -> Decimal:
    """Integer nano-dollars as exact Decimal dollars."""
    return Decimal(nano).scaleb(-9)


def _close(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _table(data: Any, source: str, *, packaged: bool = False) -> PriceTable:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a price table is a mapping with `models:` and `machines:`")
    try:
        spec = _TableSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        got = f" (got {first['input']!r})" if "input" in first else ""
        raise ConfigError(
            f"{source}: {where}: {first['msg']}{got}; see the packaged table "
            "slmstack/costs/prices.yaml for the shape"
        ) from None
    for name, entry in spec.models.items():
        given = [p is not None for p in (entry.input_per_1k, entry.output_per_1k)]
        if given[0] != given[1] or all(given) == (entry.machine is not None):
            raise ConfigError(
                f"{source}: models.{name}: give both input_per_1k and output_per_1k (an API "
                "priced per token), or machine: NAME (a model you serve, priced by its time)"
            )
    label = f"slmstack {spec.version}" if packaged else f"{source} ({spec.version or 'no version'})"
    return PriceTable(
        models={
            k: ModelPrice(k, v.input_per_1k, v.output_per_1k, v.machine, v.source)
            for k, v in spec.models.items()
        },
        machines={k: MachinePrice(k, v.per_hour, v.source) for k, v in spec.machines.items()},
        default_machine=spec.default_machine or "",
        version=label,
        currency=spec.currency,
    )


def _read(path: Path) -> Any:
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"price table {path} {what}; check the path (`prices:` or ${ENV})")
    try:
        return yaml.safe_load(read_utf8(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"price table {yaml_problem(path, exc)}") from None


@functools.cache
def packaged_prices() -> PriceTable:
    """The table shipped with slmstack (``slmstack/costs/prices.yaml``)."""
    text = resources.files("slmstack.costs").joinpath("prices.yaml").read_text(encoding="utf-8")
    return _table(yaml.safe_load(text), "slmstack/costs/prices.yaml", packaged=True)


def load_prices(
    user: str | Path | Mapping[str, Any] | PriceTable | None = None,
    *,
    base: Path | None = None,
) -> PriceTable:
    """The packaged table, extended by ``$SLMSTACK_PRICES`` and then by ``user``.

    Args:
        user: a YAML file, a mapping of the same shape, or a table; entries replace the
            packaged ones of the same name.
        base: the folder a relative ``user`` path is relative to (a workflow file's).

    Raises:
        ConfigError: a file is missing or malformed, or a ``machine:`` has no price.

    Example:
        >>> prices = load_prices({"models": {"my-llm": {"input_per_1k": "0.001",
        ...                                              "output_per_1k": "0.002"}}})
        >>> prices.model("my-llm").output_per_1k
        Decimal('0.002')
    """
    table = packaged_prices()
    env = os.environ.get(ENV)
    if env:
        table = table.merged(_table(_read(Path(env)), env))
    if isinstance(user, PriceTable):
        table = table.merged(user)
    elif isinstance(user, Mapping):
        table = table.merged(_table(user, "prices"))
    elif user is not None:
        path = Path(user)
        if base is not None and not path.is_absolute():
            path = base / path
        table = table.merged(_table(_read(path), str(path)))
    table.check()
    return table


def with_default_machine(table: PriceTable, machine: str | None) -> PriceTable:
    """``table`` with ``machine`` as its default (checked), or unchanged for ``None``."""
    if machine is None:
        return table
    table.machine(machine)
    return replace(table, default_machine=machine)


__all__ = [
    "MachinePrice",
    "ModelPrice",
    "PriceTable",
    "from_nano",
    "load_prices",
    "packaged_prices",
    "to_nano",
    "with_default_machine",
]
