"""What goes into a summary and what comes out: prompts, inputs, sentences, the schema.

:func:`summary_messages` builds the prompt: the plain one, and the stricter one used after
a copy. The stricter prompt forbids copying in the system message and shows one worked
demonstration in which labelled input lines become a third-person sentence. The rule alone
does not stop SmolLM2-135M from handing a support-desk complaint back verbatim, labels
included; with the demonstration it writes "The customer ..." sentences (checked on the
support-desk complaints), though a model that small still invents details ("a charge of
10 cents" for "charged twice"): the check stops echoes, not errors. The demonstration
is only added when the skill has no demonstrations of its own (``few_shot``), which
teach the format better.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from slmstack.backends.base import ChatMessage
from slmstack.types import Prediction

__all__ = [
    "SUPPORT_TICKET_SCHEMA",
    "bound_sentences",
    "cut_to_tokens",
    "fit_shots",
    "join_outputs",
    "lora_pairs",
    "split_sentences",
    "summary_messages",
]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9#])")

SUPPORT_TICKET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "issue": {"type": "string", "description": "what went wrong, in a few words"},
        "product": {"type": "string", "description": "the product or service concerned"},
        "sentiment": {"enum": ["positive", "neutral", "negative"]},
        "requested_action": {"type": "string", "description": "what the customer asks for"},
    },
    "required": ["issue", "product", "sentiment", "requested_action"],
}


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences at ``.``/``!``/``?`` followed by a capital or digit."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def bound_sentences(text: str, max_sentences: int) -> tuple[str, str | None]:
    """``text`` on one line, cut to ``max_sentences``; and a warning when it was cut."""
    summary = " ".join(text.split())
    sentences = split_sentences(summary)
    if len(sentences) <= max_sentences:
        return summary, None
    cut = " ".join(sentences[:max_sentences])
    return cut, f"summary cut from {len(sentences)} to {max_sentences} sentences"


def join_outputs(outputs: Mapping[str, Prediction | str]) -> str:
    """Render earlier skills' outputs as one text to summarise (``name: result`` lines)."""
    lines = []
    for name, out in outputs.items():
        if isinstance(out, str):
            value = out
        elif out.abstained:
            value = f"(no answer: {out.abstained})"
        elif out.text is not None:
            value = out.text
        elif out.data:
            value = "; ".join(f"{k}={v}" for k, v in out.data.items())
        elif out.label is not None:
            value = f"{out.label} (confidence {out.confidence:.2f})"
        else:
            value = ", ".join(f"{s.label}: {s.text}" for s in out.spans) or "(empty)"
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


_NO_COPY = " Do not copy sentences or labels from the text: say in your own words what it is about."
# Labelled lines (as workflow templates write them) turned into one reported sentence.
_DEMO = (
    "Message: Hello, the lamp I ordered came with a broken switch. Can you send me a new "
    "one?\nMood: negative",
    "The customer received a lamp with a faulty switch and asks for a replacement.",
)


def strict_shots(shots: Sequence[tuple[str, str]]) -> Sequence[tuple[str, str]]:
    """The demonstrations of the stricter prompt: the skill's own, else the built-in one."""
    return shots or [_DEMO]


def summary_messages(
    text: str,
    *,
    max_sentences: int,
    schema: Mapping[str, Any] | None,
    instructions: str,
    shots: Sequence[tuple[str, str]],
    strict: bool = False,
) -> list[ChatMessage]:
    """System prompt, demonstrations, then the text; ``strict`` forbids copying."""
    if schema is None:
        bound = "one sentence" if max_sentences == 1 else f"at most {max_sentences} sentences"
        system = (
            f"You summarise texts. Write {bound}. Use only facts stated in the text; "
            "do not add greetings, opinions or advice."
        )
        ask = f"Summarise this text in {bound}:\n\n"
        if strict:
            system += _NO_COPY
            ask = f"Summarise this text in {bound}, in your own words:\n\n"
            shots = strict_shots(shots)
    else:
        fields = ", ".join(schema["properties"])
        system = (
            "You extract information from texts as JSON. Use only facts stated in the "
            "text; write 'unknown' when the text does not say."
        )
        ask = f"Extract {fields} from this text:\n\n"
    if instructions:
        system += " " + instructions
    messages = [ChatMessage("system", system)]
    for shot_text, shot_summary in shots:
        messages.append(ChatMessage("user", ask + shot_text))
        messages.append(ChatMessage("assistant", shot_summary))
    messages.append(ChatMessage("user", ask + text))
    return messages


def lora_pairs(
    pairs: Sequence[tuple[str, str]], *, max_sentences: int, instructions: str = ""
) -> tuple[str, list[tuple[str, str]]]:
    """``(system_prompt, [(user message, summary)])`` to train a ``Summarizer`` adapter on.

    An adapter learns the prompt it was trained with, so the (text, summary) pairs are put
    in the exact messages that ``Summarizer(max_sentences=..., instructions=...)`` sends
    (no demonstrations). Pass them to ``train_lora(pairs,
    settings=LoraSettings(system_prompt=system_prompt))`` and serve the adapter with the
    same ``max_sentences`` and ``instructions``.
    """
    system = ""
    out = []
    for text, summary in pairs:
        head, user = summary_messages(
            text, max_sentences=max_sentences, schema=None, instructions=instructions, shots=()
        )
        system = head.content
        out.append((user.content, summary))
    return system, out


def cut_to_tokens(count: Callable[[str], int], text: str, limit: int) -> tuple[str, str | None]:
    """``text`` cut to ``limit`` tokens (by ``count``), and a warning when it was cut."""
    n = total = count(text)
    if n <= limit:
        return text, None
    cut = text
    while n > limit:
        cut = cut[: int(len(cut) * 0.9 * limit / n)]
        n = count(cut)
    return (
        cut,
        f"input truncated: {total} tokens, the limit is {limit}; only the beginning was summarised",
    )


def fit_shots(
    count: Callable[[str], int], shots: list[tuple[str, str]], limit: int
) -> tuple[list[tuple[str, str]], str | None]:
    """Demonstrations that take at most half of ``limit`` tokens, and a warning if some went.

    The demonstrations share the input window with the text: left whole, long ones would
    overflow the model's context at the first call.
    """
    kept = list(shots)
    while kept and sum(count(a) + count(b) for a, b in kept) > limit // 2:
        kept.pop()
    if len(kept) == len(shots):
        return kept, None
    return kept, (
        f"kept {len(kept)} of {len(shots)} demonstrations: together they took more than half "
        f"of the {limit}-token input window; give shorter ones, or fewer"
    )
