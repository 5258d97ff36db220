"""Reversible masking: personal data replaced by ``<KIND:token>`` before anything is stored.

The method: each piece of personal data that :func:`~slmstack.proxy.pii.find_pii` finds
(and each name an optional entity tagger finds) is replaced by ``<EMAIL:...>``,
``<PHONE:...>``, ``<IBAN:...>``, ``<CARD:...>`` or ``<NAME:...>``, whose payload is the
value encrypted with Fernet (AES-128-CBC with an HMAC-SHA256, from ``cryptography``) under
a key only the operator holds. So the stored traffic keeps its shape (a task's template,
where a value was, what kind it was), which is what discovery and distillation need,
while the values can be read back only with the key (:func:`unmask`,
``slmstack proxy unmask``).

Why Fernet rather than a deterministic cipher or a hash: a hash of a phone number can be
reversed by trying every phone number, and a deterministic cipher shows which rows share
a customer. Fernet's random IV makes two tokens of the same value differ. It costs
about 100 characters per value and ~20 µs to encrypt one, off the request path.

Example:
    >>> key = generate_key()
    >>> masked = Masker(key).mask("mail ana@example.com")
    >>> masked.startswith("mail <EMAIL:")
    True
    >>> unmask(masked, key)
    'mail ana@example.com'
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from slmstack.errors import ConfigError, DataError, MissingDependencyError
from slmstack.proxy.pii import KINDS, find_pii

TOKEN = re.compile("<(" + "|".join(KINDS) + r"):([A-Za-z0-9_=-]{20,})>")
NAME_LABELS = frozenset({"PER", "PERSON", "NAME"})  # tagger labels that are a person's name


def _fernet(key: str | bytes) -> Any:
    try:
        from cryptography.fernet import Fernet
    except ImportError as exc:
        raise MissingDependencyError("cryptography", "proxy", "Masking personal data") from exc
    try:
        return Fernet(key)
    except (ValueError, TypeError):
        raise ConfigError(
            "the masking key is not a Fernet key (32 bytes, URL-safe base64, 44 characters); "
            "make one with `slmstack proxy keygen` and keep it where the proxy reads it"
        ) from None


def generate_key() -> str:
    """A new random masking key (URL-safe base64), for the operator to keep."""
    from cryptography.fernet import Fernet

    return str(Fernet.generate_key().decode("ascii"))


def key_from_env(variable: str) -> str:
    """The masking key held in environment variable ``variable``; ConfigError when unset."""
    key = os.environ.get(variable, "").strip()
    if not key:
        raise ConfigError(
            f"${variable} is not set, so there is no masking key; create one with "
            f"`slmstack proxy keygen`, keep it safe, and export {variable}=<the key>"
        )
    _fernet(key)  # a malformed key fails here, not on the first request
    return key


class Masker:
    """Replaces personal data in texts by encrypted ``<KIND:token>`` tokens.

    Args:
        key: the Fernet key (see :func:`generate_key`).
        tagger: a fitted entity tagger (any skill whose predictions carry ``spans``);
            its ``PER``/``PERSON`` spans are masked as names, beside the patterns.
        kinds: the kinds to mask, of :data:`~slmstack.proxy.pii.KINDS`.
    """

    def __init__(
        self, key: str | bytes, *, tagger: Any | None = None, kinds: Sequence[str] = KINDS
    ):
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ConfigError(f"cannot mask {unknown}; the kinds are {', '.join(KINDS)}")
        self._fernet = _fernet(key)
        self.tagger = tagger
        self.kinds = tuple(kinds)

    def mask(self, text: str) -> str:
        """``text`` with its personal data replaced by tokens."""
        return self.mask_many([text])[0]

    def mask_many(self, texts: Sequence[str]) -> list[str]:
        """Each text masked; the tagger (if any) sees them as one batch."""
        names: list[list[tuple[str, int, int]]] = [[] for _ in texts]
        if self.tagger is not None and "NAME" in self.kinds:
            todo = [i for i, t in enumerate(texts) if t.strip()]
            for i, pred in zip(todo, self.tagger.predict([texts[i] for i in todo]), strict=True):
                names[i] = [("NAME", s.start, s.end) for s in pred.spans if s.label in NAME_LABELS]
        return [self._replace(text, extra) for text, extra in zip(texts, names, strict=True)]

    def _replace(self, text: str, extra: list[tuple[str, int, int]]) -> str:
        found = find_pii(text, kinds=self.kinds, extra=extra)
        if not found:
            return text
        parts: list[str] = []
        at = 0
        for f in found:
            token = self._fernet.encrypt(f.text.encode("utf-8")).decode("ascii")
            parts += [text[at : f.start], f"<{f.kind}:{token}>"]
            at = f.end
        parts.append(text[at:])
        return "".join(parts)


def unmask(text: str, key: str | bytes) -> str:
    """``text`` with every ``<KIND:token>`` decrypted back to its value.

    Raises:
        DataError: a token does not decrypt with ``key`` (another key, or altered).
    """
    from cryptography.fernet import InvalidToken

    fernet = _fernet(key)

    def value(m: re.Match[str]) -> str:
        try:
            return str(fernet.decrypt(m.group(2).encode("ascii")).decode("utf-8"))
        except InvalidToken:
            raise DataError(
                f"the <{m.group(1)}:...> token at character {m.start()} does not decrypt with "
                "this key; pass the key the proxy masked with (tokens are also refused when "
                "altered)"
            ) from None

    return TOKEN.sub(value, text)


def strip_tokens(text: str) -> str:
    """``text`` with each mask token replaced by its bare ``<KIND>`` (to audit or display)."""
    return TOKEN.sub(lambda m: f"<{m.group(1)}>", text)


__all__ = ["TOKEN", "Masker", "generate_key", "key_from_env", "strip_tokens", "unmask"]
