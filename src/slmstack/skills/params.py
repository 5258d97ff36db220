"""Hyper-parameters read from a skill's ``__init__`` signature, and checked in one place.

A skill declares its parameters once, as keyword-only arguments of ``__init__`` with
type hints, defaults and a trailing comment that says why the default is what it is.
From that one declaration come ``get_params``/``set_params``, the types and help of
``slmstack train KIND --set key=value``, and the checks: ``Literal`` hints give the
allowed values, ``int``/``float``/``bool``/``str`` hints the types, and a skill's
``constraints`` class attribute adds numeric ranges (:class:`Interval`) or a custom check.
Messages follow scikit-learn's: ``The 'precision' parameter of TextClassifier must be
'auto', 'fp32' or 'bf16'. Got 'fp16' instead.``
"""

from __future__ import annotations

import difflib
import inspect
import io
import tokenize
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, get_args, get_origin

from slmstack.errors import ConfigError


@dataclass(frozen=True)
class Interval:
    """A numeric range; ``None`` leaves a side open.

    Example:
        >>> Interval(int, 1, None).describe()
        'an int >= 1'
    """

    type: type
    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"
    note: str = ""

    def allows(self, value: Any) -> bool:
        """Whether ``value`` has the type and lies in the range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type is int and not isinstance(value, int):
            return False
        lo_ok = self.low is None or (
            value >= self.low if self.closed in ("both", "left") else value > self.low
        )
        hi_ok = self.high is None or (
            value <= self.high if self.closed in ("both", "right") else value < self.high
        )
        return lo_ok and hi_ok

    def describe(self) -> str:
        """The allowed values, in words."""
        kind = "an int" if self.type is int else "a float"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        if self.high is None and self.low is not None:
            text = f"{kind} {'>=' if left == '[' else '>'} {_num(self.low)}"
        elif self.low is None and self.high is not None:
            text = f"{kind} {'<=' if right == ']' else '<'} {_num(self.high)}"
        elif self.low is None:
            text = kind
        else:
            text = f"{kind} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        return f"{text} {self.note}".rstrip()


def _num(x: float | None) -> str:
    return "inf" if x is None else (str(int(x)) if float(x).is_integer() else str(x))


Check = Interval | Callable[[Any], str | None]
"""A constraint: a range, or a function returning an error text (``None`` when fine)."""


def runtime_check(value: Any) -> str | None:
    """A generator runtime that :func:`slmstack.backends.load_backend` knows."""
    from slmstack.backends.factory import runtimes

    names = runtimes.names()
    return None if value in names else "one of " + ", ".join(repr(n) for n in sorted(names))


def optional(interval: Interval) -> Check:
    """``None`` (chosen during fit) or a value in ``interval``."""

    def check(value: Any) -> str | None:
        ok = value is None or interval.allows(value)
        return None if ok else f"None or {interval.describe()}"

    return check


@dataclass(frozen=True)
class Param:
    """One ``__init__`` parameter: name, type hint, default and help text."""

    name: str
    annotation: Any
    default: Any
    help: str

    def type_name(self) -> str:
        """A short name of the type for help texts (``int``, ``'head'|'finetune'``)."""
        choices = literal_choices(self.annotation)
        if choices:
            return "|".join(str(c) for c in choices)
        if isinstance(self.annotation, type):
            return self.annotation.__name__
        return str(self.annotation).replace("typing.", "")


@cache
def signature_params(cls: type) -> tuple[Param, ...]:
    """The keyword parameters of ``cls.__init__``, with resolved type hints and help."""
    init = cls.__init__  # type: ignore[misc]
    sig = inspect.signature(init)
    try:
        hints = typing.get_type_hints(init)
    except (NameError, TypeError):  # a forward reference we cannot see: keep the raw text
        hints = {}
    comments = _trailing_comments(init)
    out = []
    for p in sig.parameters.values():
        if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out.append(
            Param(p.name, hints.get(p.name, p.annotation), p.default, comments.get(p.name, ""))
        )
    return tuple(out)


def _trailing_comments(func: Callable[..., Any]) -> dict[str, str]:
    """``name: int = 3,  # why`` → ``{"name": "why"}``, read from the source of ``func``."""
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    last_name: str | None = None
    depth = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.OP and tok.string in "([{":
                depth += 1
            elif tok.type == tokenize.OP and tok.string in ")]}":
                depth -= 1
                if depth == 0:
                    break
            elif tok.type == tokenize.NAME and depth == 1 and last_name is None:
                last_name = tok.string
            elif tok.type == tokenize.OP and tok.string == "," and depth == 1:
                pass
            elif tok.type == tokenize.COMMENT and last_name is not None:
                out[last_name] = tok.string.lstrip("#").strip()
            if tok.type in (tokenize.NL, tokenize.NEWLINE):
                last_name = None
    except tokenize.TokenError:
        return out
    return out


def literal_choices(annotation: Any) -> tuple[Any, ...]:
    """The allowed values of a ``Literal[...]`` hint (also inside ``X | None``)."""
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    if get_origin(annotation) in (types.UnionType, typing.Union):
        found: tuple[Any, ...] = ()
        for arg in get_args(annotation):
            found += literal_choices(arg)
        return found
    return ()


def _options(values: tuple[Any, ...]) -> str:
    shown = [repr(v) for v in values]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


def _type_error(annotation: Any, value: Any) -> str | None:
    """What is wrong with ``value`` for a simple type hint, or ``None``."""
    choices = literal_choices(annotation)
    allows_none = get_origin(annotation) in (types.UnionType, typing.Union) and type(
        None
    ) in get_args(annotation)
    if value is None and allows_none:
        return None
    if choices:
        return None if value in choices else _options(choices)
    base = annotation
    if get_origin(annotation) in (types.UnionType, typing.Union):
        args = [a for a in get_args(annotation) if a is not type(None)]
        base = args[0] if len(args) == 1 else None
    if base is bool:
        return None if isinstance(value, bool) else "True or False"
    if base is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an int"
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "a float"
    if base is str:
        return None if isinstance(value, str) else "a str"
    return None


def check_param_names(owner: str, known: list[str], given: Mapping[str, Any]) -> None:
    """Refuse an unknown parameter name with a did-you-mean."""
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{owner} has no parameter {key!r}.{hint} Valid: {', '.join(sorted(known))}."
            )


def check_param_values(
    owner: str,
    params: tuple[Param, ...],
    values: Mapping[str, Any],
    constraints: Mapping[str, Check],
) -> None:
    """Raise :class:`ConfigError` for the first value its hint or constraint refuses."""
    by_name = {p.name: p for p in params}
    for name, value in values.items():
        param = by_name.get(name)
        if param is None:
            continue
        problem = _type_error(param.annotation, value)
        check = constraints.get(name)
        if problem is None and check is not None:
            if isinstance(check, Interval):
                problem = None if check.allows(value) else check.describe()
            else:
                problem = check(value)
        if problem is not None:
            raise ConfigError(
                f"The {name!r} parameter of {owner} must be {problem}. Got {value!r} instead."
            )
