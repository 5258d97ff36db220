"""Schema-guided JSON decoding for transformers causal LMs.

llama.cpp compiles a JSON schema into a grammar; a plain transformers model has no
such engine, so this module writes the JSON *structure* itself (braces, keys, commas,
quotes) and lets the model fill only the values:

* strings are generated until the model closes the quote (or the token budget ends,
  then the string is closed for it), and re-escaped, so the output is always valid;
* ``enum`` and ``boolean`` values are chosen by the model's log-likelihood of each option;
* numbers are generated from digit tokens only;
* arrays ask the model, before each item, whether ``]`` is likelier than another item.

Every property of an object is filled, in schema order. Supported keywords: ``type``
(object, string, number, integer, boolean, null, array, or a list of these), ``properties``,
``items``, ``enum``, ``const``, ``maxItems``, ``minItems``. Anything else
(``anyOf``, ``$ref``, ``pattern``...) is refused with a :class:`ConfigError`, because
silently ignoring it could produce JSON that does not match the schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import __version__ as transformers_version

from slmstack.errors import ConfigError

_SUPPORTED = {
    "type", "properties", "items", "enum", "const", "required", "maxItems", "minItems",
    "title", "description", "additionalProperties", "default", "examples", "$schema",
}  # fmt: skip
_NEW_CACHE_API = int(transformers_version.split(".")[0]) >= 5
_DEFAULT_MAX_ITEMS = 8  # keeps a rambling model from filling the whole token budget
_MAX_NUMBER_TOKENS = 8


def check_schema(schema: Mapping[str, Any], where: str = "schema") -> None:
    """Raise :class:`ConfigError` for keywords this decoder cannot honour."""
    unknown = sorted(set(schema) - _SUPPORTED)
    if unknown:
        raise ConfigError(
            f"{where} uses {', '.join(unknown)}, which the transformers backend's JSON decoder "
            "does not support. Simplify the schema or use the llama_cpp runtime, whose "
            "grammar engine handles full JSON schema."
        )
    for key, sub in (schema.get("properties") or {}).items():
        check_schema(sub, f"{where}.properties.{key}")
    if isinstance(schema.get("items"), Mapping):
        check_schema(schema["items"], f"{where}.items")
    if "type" not in schema and "enum" not in schema and "const" not in schema:
        raise ConfigError(f"{where} has no 'type', 'enum' or 'const'; say what value it holds.")


class JsonDecoder:
    """Incremental decoder over one prompt, reusing the KV cache between steps."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        prompt_ids: Sequence[int],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        seed: int = 0,
    ):
        from transformers import DynamicCache

        self.model = model
        self.tokenizer = tokenizer
        self.cache = DynamicCache()
        self.ids: list[int] = []
        self.logits: torch.Tensor | None = None
        self.prompt_len = len(prompt_ids)
        self.budget_end = len(prompt_ids) + max_tokens
        self.truncated = False
        self.temperature = temperature
        self.generator = torch.Generator().manual_seed(seed)
        self._digits: dict[str, torch.Tensor] = {}
        self._feed(list(prompt_ids))

    # ------------------------------------------------------------------ model steps
    def _feed(self, ids: list[int]) -> None:
        if not ids:
            return
        out = self._forward(ids)
        self.ids += ids
        self.logits = out.logits[0, -1].float()

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _emit(self, text: str) -> None:
        self._feed(self._encode(text))

    def _forward(self, ids: list[int]) -> Any:
        # transformers 5 renamed the ``past_key_values`` argument to ``cache``
        kw = "cache" if _NEW_CACHE_API else "past_key_values"
        with torch.inference_mode():
            return self.model(input_ids=torch.tensor([ids]), use_cache=True, **{kw: self.cache})

    def _crop(self, length: int) -> None:
        # a negative argument removes that many tokens in every transformers version
        remove = self.cache.get_seq_length() - length
        if remove > 0:
            self.cache.crop(-remove)

    def _rollback(self, length: int) -> None:
        self._crop(length)
        self.ids = self.ids[:length]
        self.logits = None  # the next step always feeds text first

    def _score(self, text: str) -> float:
        """Log-probability of ``text`` as the continuation; the state is left unchanged."""
        if self.logits is None:
            raise RuntimeError("internal: score() after rollback without emit()")
        ids = self._encode(text)
        n, last = len(self.ids), self.logits
        out = self._forward(ids)
        logits = torch.cat([last[None], out.logits[0, :-1].float()])
        logp = torch.log_softmax(logits, dim=-1)[torch.arange(len(ids)), torch.tensor(ids)]
        self._crop(n)
        self.logits = last
        return float(logp.sum())

    def _pick(self, logits: torch.Tensor) -> int:
        if self.temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / self.temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def _budget_left(self) -> int:
        return self.budget_end - len(self.ids)

    # ------------------------------------------------------------------ values
    def value(self, schema: Mapping[str, Any]) -> Any:
        """Emit one JSON value matching ``schema`` and return it as Python data."""
        if "const" in schema:
            self._emit(json.dumps(schema["const"]))
            return schema["const"]
        if "enum" in schema:
            return self._choose(list(schema["enum"]))
        kind = schema["type"]
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"] or ["null"]
            kind = kinds[0]
        if kind == "object":
            return self._object(schema)
        if kind == "array":
            return self._array(schema)
        if kind == "string":
            return self._string()
        if kind in ("number", "integer"):
            return self._number(integer=kind == "integer")
        if kind == "boolean":
            return self._choose([True, False])
        if kind == "null":
            self._emit("null")
            return None
        raise ConfigError(f"unsupported JSON schema type {kind!r}")

    def _choose(self, options: list[Any]) -> Any:
        scores = [self._score(json.dumps(o, ensure_ascii=False)) for o in options]
        best = options[max(range(len(options)), key=scores.__getitem__)]
        self._emit(json.dumps(best, ensure_ascii=False))
        return best

    def _object(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self._emit("{")
        for i, (key, sub) in enumerate((schema.get("properties") or {}).items()):
            self._emit((", " if i else "") + json.dumps(key, ensure_ascii=False) + ": ")
            out[key] = self.value(sub)
        self._emit("}")
        return out

    def _array(self, schema: Mapping[str, Any]) -> list[Any]:
        items = schema.get("items") or {"type": "string"}
        lo = int(schema.get("minItems", 0))
        hi = int(schema.get("maxItems", _DEFAULT_MAX_ITEMS))
        out: list[Any] = []
        self._emit("[")
        opener = {"object": "{", "string": '"', "array": "["}.get(str(items.get("type")), "0")
        while len(out) < hi:
            more = ", " if out else opener
            if len(out) >= lo and (
                self._budget_left() <= 0 or self._score("]") >= self._score(more)
            ):
                break
            if out:
                self._emit(", ")
            out.append(self.value(items))
        self._emit("]")
        return out

    def _string(self) -> str:
        start = len(self.ids)
        self._emit('"')
        body = len(self.ids)
        eos = self.tokenizer.eos_token_id
        raw = ""
        closed = False
        while self._budget_left() > 0 and self.logits is not None:
            token = self._pick(self.logits)
            if token == eos:
                closed = True
                break
            self._feed([token])
            raw = self.tokenizer.decode(self.ids[body:], skip_special_tokens=True)
            end = _closing_quote(raw)
            if end >= 0:
                raw, closed = raw[:end], True
                break
        self.truncated = self.truncated or not closed
        try:
            text = json.loads(f'"{raw}"')
        except json.JSONDecodeError:
            text = raw  # raw newlines or stray backslashes: keep the text, re-escape below
        # Replace what the model wrote (which may run past the quote) by the canonical,
        # escaped string, so the cache matches the JSON text returned.
        self._rollback(start)
        self._emit(json.dumps(text, ensure_ascii=False))
        return str(text)

    def _digit_tokens(self, allowed: str) -> torch.Tensor:
        if allowed not in self._digits:
            vocab = len(self.tokenizer)
            pieces = self.tokenizer.convert_ids_to_tokens(list(range(vocab)))
            mask = torch.zeros(vocab, dtype=torch.bool)
            for i, piece in enumerate(pieces):
                if piece and all(c in allowed for c in piece):
                    mask[i] = True
            self._digits[allowed] = mask
        return self._digits[allowed]

    def _number(self, *, integer: bool) -> float | int:
        chars = "0123456789-" if integer else "0123456789.-"
        mask = self._digit_tokens(chars)
        start = len(self.ids)
        text = ""
        while self.logits is not None and self._budget_left() > 0:
            logits = self.logits[: mask.shape[0]]
            digit = logits.masked_fill(~mask, float("-inf"))
            if text and float(logits.masked_fill(mask, float("-inf")).max()) > float(digit.max()):
                break  # the model would rather end the number here
            piece = self.tokenizer.decode([int(digit.argmax())])
            if not _valid_number_prefix(text + piece) or len(text) > _MAX_NUMBER_TOKENS * 3:
                break
            text += piece
            self._feed([int(digit.argmax())])
        if text.rstrip(".") in ("", "-"):
            self.truncated = True  # budget ran out before a digit: report finish "length"
        value = _parse_number(text, integer=integer)
        self._rollback(start)
        self._emit(json.dumps(value))
        return value


def _closing_quote(raw: str) -> int:
    """Index of the first unescaped ``"`` in ``raw``, or -1."""
    escaped = False
    for i, c in enumerate(raw):
        if c == '"' and not escaped:
            return i
        escaped = c == "\\" and not escaped
    return -1


def _valid_number_prefix(text: str) -> bool:
    body = text[1:] if text.startswith("-") else text
    return "-" not in body and body.count(".") <= 1 and not body.startswith(".")


def _parse_number(text: str, *, integer: bool) -> float | int:
    body = text.rstrip(".")
    if body in ("", "-"):
        return 0
    return int(body) if integer else float(body) if "." in body else int(body)


def generate_json(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[int],
    schema: Mapping[str, Any],
    *,
    max_tokens: int,
    temperature: float = 0.0,
    seed: int = 0,
) -> tuple[str, int, bool]:
    """JSON text matching ``schema``, the tokens it took, and whether a value was cut short."""
    check_schema(schema)
    decoder = JsonDecoder(
        model, tokenizer, prompt_ids, max_tokens=max_tokens, temperature=temperature, seed=seed
    )
    value = decoder.value(schema)
    return (
        json.dumps(value, ensure_ascii=False),
        len(decoder.ids) - decoder.prompt_len,
        decoder.truncated,
    )
