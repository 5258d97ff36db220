"""Personal data in free text: e-mail addresses, phone numbers, IBANs, card numbers, names.

The method: a regular expression proposes candidates, and a check that a random string
rarely passes confirms the ones that carry a checksum: an IBAN must pass ISO 13616's
mod-97 test, a card number Luhn's. Phone numbers have no checksum, so their patterns are
anchored on what phone numbers look like in text (a ``+`` country code, a leading trunk
``0``, or the North-American 3-3-4 groups) and must hold 7 to 15 digits (E.164's range).
Names have no shape at all: a trained :class:`~slmstack.skills.tagger.EntityTagger`
finds them best (see :class:`~slmstack.proxy.masking.Masker`); without one, the patterns
here catch names where text announces them (``Mr``/``Dr``, ``my name is``, ``Dear``,
``Regards,``, ``Name:``), and miss the others.

Candidates are found kind by kind in a fixed order (IBAN, card, e-mail, phone, name) and
a later kind never claims characters an earlier one holds, so the digits of an IBAN are
not also reported as a phone number.

Example:
    >>> [(f.kind, f.text) for f in find_pii("Write to ana@example.com or +44 20 7946 0958")]
    [('EMAIL', 'ana@example.com'), ('PHONE', '+44 20 7946 0958')]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

KINDS = ("IBAN", "CARD", "EMAIL", "PHONE", "NAME")

_EMAIL = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+"
    r"[A-Za-z]{2,24}(?![\w-])"
)
# Printed IBANs come in groups of four; the compact form matches the same pattern.
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?"
)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}"  # +44 20 7946 0958
    r"|\(?0\d{1,4}\)?[\s.-]?\d{3,4}[\s.-]?\d{3,5}"  # 030 1234 5678, 03-12345678
    r"|\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}"  # (212) 555-0187, 212-555-0187
    r")(?![\w])"
)
# Names in any Latin, Greek or Cyrillic script (José, Łukasz, Müller), not ASCII alone.
_UPPER = "".join(re.escape(chr(i)) for i in range(0x530) if chr(i).isupper())
_LOWER = "".join(re.escape(chr(i)) for i in range(0x530) if chr(i).islower())
_WORD = rf"[{_UPPER}][{_LOWER}'’-]+"
_FULL = rf"{_WORD}(?:[ \t]+{_WORD}){{0,2}}"
_NAME_CUES = (
    re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?[ \t]+({_FULL})"),
    re.compile(rf"(?i:\bmy name is|\bname:|\bdear|\bregards,|\bsincerely,)\s+({_FULL})"),
)


@dataclass(frozen=True)
class Found:
    """One piece of personal data: its kind (``KINDS``) and ``text == source[start:end]``."""

    kind: str
    start: int
    end: int
    text: str


def iban_valid(value: str) -> bool:
    """Whether ``value`` passes ISO 13616's check.

    Letters become numbers (A=10 ... Z=35), the country and check digits move to the end,
    and the whole number modulo 97 must be 1.
    """
    compact = value.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    if not compact.isalnum() or not compact.isascii():
        return False
    digits = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


def luhn_valid(digits: str) -> bool:
    """Luhn's checksum over a string of digits (the check of every payment card number)."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    for m in _IBAN.finditer(text):
        # The pattern may run into the next word ("... 3000 BANK"): shorten by groups.
        candidate = m.group()
        while len(candidate.replace(" ", "")) >= 15:
            if iban_valid(candidate):
                yield m.start(), m.start() + len(candidate)
                break
            cut = candidate.rfind(" ")
            candidate = candidate[:cut] if cut > 0 else candidate[:-1]


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            yield m.span()


def _emails(text: str) -> Iterator[tuple[int, int]]:
    for m in _EMAIL.finditer(text):
        yield m.span()


def _phones(text: str) -> Iterator[tuple[int, int]]:
    for m in _PHONE.finditer(text):
        if 7 <= sum(c.isdigit() for c in m.group()) <= 15:
            yield m.span()


def _names(text: str) -> Iterator[tuple[int, int]]:
    for pattern in _NAME_CUES:
        for m in pattern.finditer(text):
            yield m.span(1)


_FINDERS = {"IBAN": _ibans, "CARD": _cards, "EMAIL": _emails, "PHONE": _phones, "NAME": _names}


def find_pii(
    text: str,
    *,
    kinds: Iterable[str] = KINDS,
    extra: Iterable[tuple[str, int, int]] = (),
) -> list[Found]:
    """The personal data in ``text``, in order, never overlapping.

    Args:
        text: the text to search.
        kinds: the kinds to look for, of ``KINDS``.
        extra: spans found elsewhere (an entity tagger's names) as ``(kind, start, end)``;
            they come after the pattern kinds and take only characters still free.
    """
    taken: list[tuple[int, int]] = []
    found: list[Found] = []

    def claim(kind: str, start: int, end: int) -> None:
        if end > start and all(end <= s or start >= e for s, e in taken):
            taken.append((start, end))
            found.append(Found(kind, start, end, text[start:end]))

    wanted = set(kinds)
    for kind in KINDS:
        if kind in wanted:
            for start, end in _FINDERS[kind](text):
                claim(kind, start, end)
    for kind, start, end in extra:
        claim(kind, start, end)
    return sorted(found, key=lambda f: f.start)


__all__ = ["KINDS", "Found", "find_pii", "iban_valid", "luhn_valid"]
