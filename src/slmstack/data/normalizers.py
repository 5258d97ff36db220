"""Normalisers for extracted values: dates to ISO 8601, amounts to ``Decimal`` + currency.

Each ``find_*`` function returns every match in a text with its character offsets (the
candidates a field extractor ranks); each ``parse_*`` function reads one value and
raises :class:`~slmstack.errors.DataError` when it is not one.

Rules, stated so they can be relied on:

* Numeric dates follow the declared ``order`` (``"DMY"``, ``"MDY"`` or ``"YMD"``);
  ``03/04/2024`` is 3 April under DMY and 4 March under MDY. A date that is invalid
  in the declared order is not a date (no silent swap). Years with 4 digits first
  (``2024-04-03``) are always year-month-day. Two-digit years mean 2000–2069 and
  1970–1999. Month names are read in English, French, German, Spanish and Italian, as
  each language writes them (``15 août 2024``, ``3. März 2024``, ``5 de junio de 2024``).
* In amounts, thousands may be grouped by spaces (also no-break ones), apostrophes,
  ``.`` or ``,``. When both ``.`` and ``,`` appear, the last one is the decimal mark
  (``1.234,56`` and ``1,234.56`` are both 1234.56). With one kind only, a mark followed
  by exactly three digits groups thousands (``1,234``; ``1.234.567``) unless it is a
  single ``.`` (``1.234`` stays 1.234); otherwise it is the decimal mark (``12,50``).
* Currency comes from a symbol or ISO code next to the number (``$`` reads as USD,
  ``RM`` as MYR); without one it is ``None`` and the caller's default applies. A minus
  sign may come before the currency or after it (``-$12.50`` and ``$-12.50``), or right
  after the number (``1.234,56-``, as SAP prints a credit). An amount in brackets is
  negative, as accountants write a credit (``(£114.00)``), when it reads as money (a
  decimal part or a currency): a bracketed count (``(3)``) stays positive.

Example:
    >>> parse_date("03/04/2024").isoformat()
    '2024-04-03'
    >>> parse_amount("1.234,56 EUR")
    Money(amount=Decimal('1234.56'), currency='EUR')
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

from slmstack.errors import ConfigError, DataError

DateOrder = Literal["DMY", "MDY", "YMD"]

_MONTHS = {
    name: i
    for i, names in enumerate(
        [
            ("jan", "january", "janv", "janvier", "januar", "enero", "gennaio"),
            (
                "feb",
                "february",
                "fev",
                "fevr",
                "fév",
                "févr",
                "février",
                "februar",
                "febrero",
                "febbraio",
            ),
            ("mar", "march", "mars", "marz", "maerz", "mär", "märz", "mrz", "marzo"),
            ("apr", "april", "avr", "avril", "abril", "aprile"),
            ("may", "mai", "mayo", "maggio"),
            ("jun", "june", "juin", "juni", "junio", "giugno"),
            ("jul", "july", "juil", "juillet", "juli", "julio", "luglio"),
            ("aug", "august", "aout", "août", "agosto"),
            ("sep", "sept", "september", "septembre", "septiembre", "settembre"),
            ("oct", "october", "octobre", "okt", "oktober", "octubre", "ottobre"),
            ("nov", "november", "novembre", "noviembre"),
            (
                "dec",
                "december",
                "decembre",
                "déc",
                "décembre",
                "dez",
                "dezember",
                "diciembre",
                "dicembre",
            ),
        ],
        start=1,
    )
    for name in names
}
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_SEP = r"[/\-.]"
_DATE_PATTERNS = [
    # 2024-04-03, 2024/4/3
    ("ymd", re.compile(rf"(?<!\d)(\d{{4}})({_SEP})(\d{{1,2}})\2(\d{{1,2}})(?!\d)")),
    # 03/04/2024, 3-4-24, 03.04.2024 (order decides which is the day)
    ("num", re.compile(rf"(?<!\d)(\d{{1,2}})({_SEP})(\d{{1,2}})\2(\d{{4}}|\d{{2}})(?![\d])")),
    # 25 Dec 2018, 25-DEC-18, 25DEC2018, 25th December, 2018, 1er août 2024, 5 de junio de 2024
    ("dmy_text", re.compile(
        rf"(?<![\w])(\d{{1,2}})(?:st|nd|rd|th|er)?[\s\-/.]*(?:de\s+)?({_MONTH_RE})\.?[\s\-/.,]*"
        rf"(?:de\s+)?(\d{{4}}|\d{{2}})(?!\d)",
        re.IGNORECASE)),
    # Dec 25, 2018; December 25 2018
    ("mdy_text", re.compile(
        rf"(?<![\w])({_MONTH_RE})\.?[\s\-/.]*(\d{{1,2}})(?:st|nd|rd|th)?,?[\s\-/.]+(\d{{4}})(?!\d)",
        re.IGNORECASE)),
    # 20180428 (year first), 25032018 (year last, order decides): 8 digits, years 1990-2099
    ("compact", re.compile(r"(?<![\w.,])(\d{8})(?![\d.,]\d|\w)")),
]  # fmt: skip

_CURRENCY_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR", "₩": "KRW"}
_CURRENCY_CODES = {"RM": "MYR", "US$": "USD", "S$": "SGD", "A$": "AUD", "C$": "CAD"}
_ISO = ("USD|EUR|GBP|JPY|CHF|CAD|AUD|NZD|SGD|MYR|INR|CNY|HKD|SEK|NOK|DKK|PLN|CZK|ZAR|"
        "BRL|MXN|KRW|IDR|THB|PHP|VND|AED|SAR|TRY|RUB")  # fmt: skip
_CUR = rf"(?:{_ISO}|RM|US\$|S\$|A\$|C\$|[$€£¥₹₩])"
# Thousands may be grouped by a space of any width: French text writes a no-break or a
# narrow no-break space (U+00A0, U+202F), which PDF-to-text tools keep.
_GROUP_SPACES = " \u00a0\u202f\u2009"
_NUM = (
    rf"[-−]?\d{{1,3}}(?:[{_GROUP_SPACES}.,'’]\d{{3}})+(?:[.,]\d{{1,2}})?"
    r"|[-−]?\d+(?:[.,]\d{1,3})?"
)
_AMOUNT_RE = re.compile(
    rf"(?<![\w.,\-/#])(?<!\d:)(?:(?P<sign>[-−])?(?P<pre>{_CUR})\s?)?(?P<num>{_NUM})(?![\w:%]|[.,]\d)(?P<trail>-(?![\w.,]))?(?:\s?(?P<post>{_CUR})(?![A-Za-z]))?"
)  # fmt: skip


@dataclass(frozen=True)
class Money:
    """An exact amount and its ISO 4217 currency (``None`` when the text gives none)."""

    amount: Decimal
    currency: str | None


def _year(raw: str) -> int:
    y = int(raw)
    if len(raw) == 2:
        y += 2000 if y < 70 else 1900
    return y


def _make(y: int, m: int, d: int) -> dt.date | None:
    try:
        return dt.date(y, m, d)
    except ValueError:
        return None


def _compact(digits: str, order: str) -> dt.date | None:
    """An 8-digit date: year first when it reads as one, else day and month as ``order``.

    Only years 1990-2099 count, so that phone, invoice and amount digits rarely pass.
    """
    year_first = int(digits[:4])
    if 1990 <= year_first <= 2099:
        date = _make(year_first, int(digits[4:6]), int(digits[6:]))
        if date is not None:
            return date
    year_last = int(digits[4:])
    if not 1990 <= year_last <= 2099 or order == "YMD":
        return None
    a, b = int(digits[:2]), int(digits[2:4])
    return _make(year_last, b, a) if order == "DMY" else _make(year_last, a, b)


def check_order(order: str) -> None:
    """Raise ConfigError unless ``order`` is DMY, MDY or YMD."""
    if order not in ("DMY", "MDY", "YMD"):
        raise ConfigError(f"date order must be 'DMY', 'MDY' or 'YMD'. Got {order!r} instead.")


def find_dates(text: str, *, order: DateOrder = "DMY") -> list[tuple[int, int, dt.date]]:
    """Every date in ``text`` as ``(start, end, date)``, in text order, without overlaps."""
    check_order(order)
    found: list[tuple[int, int, dt.date]] = []
    for kind, pattern in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            g = m.groups()
            if kind == "ymd":
                date = _make(int(g[0]), int(g[2]), int(g[3]))
            elif kind == "num":
                a, b, y = int(g[0]), int(g[2]), _year(g[3])
                if order == "YMD":  # 2-digit year first is too ambiguous to guess
                    date = None
                else:
                    date = _make(y, b, a) if order == "DMY" else _make(y, a, b)
            elif kind == "compact":
                date = _compact(g[0], order)
            elif kind == "dmy_text":
                date = _make(_year(g[2]), _MONTHS[g[1].lower()], int(g[0]))
            else:
                date = _make(int(g[2]), _MONTHS[g[0].lower()], int(g[1]))
            if date is None:
                continue
            s, e = m.span()
            if all(e <= fs or s >= fe for fs, fe, _ in found):
                found.append((s, e, date))
    return sorted(found)


def parse_date(text: str, *, order: DateOrder = "DMY") -> dt.date:
    """The single date in ``text`` (the first when there are several)."""
    found = find_dates(text, order=order)
    if not found:
        raise DataError(
            f"no date found in {text!r} (order {order}); expected forms like 2024-04-03, "
            "03/04/2024, 3 Apr 2024 or April 3, 2024"
        )
    return found[0][2]


def _number(raw: str) -> Decimal:
    s = re.sub(f"[{_GROUP_SPACES}'’]", "", raw.replace("−", "-"))
    neg = s.startswith("-")
    s = s.lstrip("-")
    if "," in s and "." in s:
        dec = "," if s.rfind(",") > s.rfind(".") else "."
        s = s.replace("." if dec == "," else ",", "").replace(dec, ".")
    elif "," in s or "." in s:
        mark = "," if "," in s else "."
        parts = s.split(mark)
        thousands = all(len(p) == 3 for p in parts[1:]) and not (mark == "." and len(parts) == 2)
        s = "".join(parts) if thousands else s.replace(",", ".")
        if s.count(".") > 1:
            raise DataError(f"{raw!r} is not a number: several decimal marks")
    try:
        value = Decimal(s)
    except InvalidOperation as exc:
        raise DataError(f"{raw!r} is not a number") from exc
    return -value if neg else value


def _currency(token: str | None) -> str | None:
    if token is None:
        return None
    return _CURRENCY_SYMBOLS.get(token) or _CURRENCY_CODES.get(token.upper()) or token.upper()


def find_amounts(text: str) -> list[tuple[int, int, Money]]:
    """Every amount in ``text`` as ``(start, end, Money)``, in text order.

    Numbers that are part of a date, a time (``10:22``) or a longer token (``INV-2024``)
    are not amounts; one right after a label's colon (``TOTAL:12.50``) is.
    """
    # The text's date order is not known here: a date in either order is not an amount.
    dates = [(s, e) for order in ("DMY", "MDY") for s, e, _ in find_dates(text, order=order)]
    out = []
    for m in _AMOUNT_RE.finditer(text):
        s, e = m.span()
        if any(s < de and e > ds for ds, de in dates):
            continue
        try:
            value = _number(m.group("num"))
        except DataError:
            continue
        currency = _currency(m.group("pre") or m.group("post"))
        # (12.00) is a credit when it reads as money; (3) is a count in brackets.
        bracketed = text[s - 1 : s] == "(" and text[e : e + 1] == ")"
        bracketed &= currency is not None or bool(re.search(r"[.,]\d{1,2}$", m.group("num")))
        if bracketed:
            s, e = s - 1, e + 1  # the evidence shows the brackets: they carry the sign
        if m.group("sign") or m.group("trail") or bracketed:
            value = -abs(value)  # -$12.50, 12.50-, (12.50): one minus, however written
        out.append((s, e, Money(value, currency)))
    return out


def parse_amount(text: str, *, default_currency: str | None = None) -> Money:
    """The amount in ``text``; with several, the one that carries a currency, else the last."""
    found = find_amounts(text)
    if not found:
        raise DataError(
            f"no amount found in {text!r}; expected forms like 1234.56, $1,234.56 or 1.234,56 EUR"
        )
    with_currency = [f for f in found if f[2].currency]
    money = (with_currency or found)[-1][2] if len(found) > 1 else found[0][2]
    if money.currency is None and default_currency:
        return Money(money.amount, default_currency)
    return money


def normalize_text(text: str) -> str:
    """Case-folded with runs of whitespace collapsed: how text fields are compared."""
    return " ".join(text.split()).casefold()


# A company registration number in brackets at the end of a line: (126926-H), (519537-X),
# (139386 X), (1234567-A), (CO. NO. 123456-A). Letters-only brackets, (M) or (KL), stay.
_TRAILING_CODE = re.compile(
    r"\s*\(\s*(?:(?:CO|COMPANY|REG)\.?\s*(?:NO)?\.?\s*:?\s*)?"
    r"[A-Z]{0,3}\d[\dA-Z]*(?:[\s-]+[\dA-Z]+)?\s*\)\s*$",
    re.IGNORECASE,
)


def drop_trailing_code(text: str) -> str:
    """``text`` without a bracketed registration number at its end.

    Receipts print a company's registration number on the same line as its name
    (``AEON CO. (M) BHD (126926-H)``); the name people write, and annotate, leaves it out.

    Example:
        >>> drop_trailing_code("AEON CO. (M) BHD (126926-H)")
        'AEON CO. (M) BHD'
        >>> drop_trailing_code("SEGI CASH & CARRY (KL)")
        'SEGI CASH & CARRY (KL)'
    """
    kept = _TRAILING_CODE.sub("", text)
    return kept if kept.strip() else text
