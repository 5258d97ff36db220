"""Streaming a generator's text with the same normalisation and bound as the whole text.

A skill that tidies its generated text (whitespace collapsed, cut after ``max_sentences``)
can still stream it, if each piece it sends is final: :func:`bounded_pieces` sends a word
once it is complete (the next piece could still extend it), and stops, closing the
generator, as soon as the sentence after the last allowed one begins. The pieces joined
equal the tidied whole text; a test checks it over every way of splitting a text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from slmstack.types import Usage


def bounded_pieces(
    raw_pieces: Iterator[str], *, max_sentences: int, split: Callable[[str], list[str]]
) -> Iterator[str]:
    r"""``" ".join(text.split())`` cut to ``max_sentences`` sentences, sent as it grows.

    Args:
        raw_pieces: the generator's pieces; closed when the bound ends the stream early.
        max_sentences: most sentences sent.
        split: splits normalised text into sentences (``split_sentences``).

    Example:
        >>> from slmstack.skills.summarizer import split_sentences
        >>> pieces = iter(["One.  Two", " words.\nThree", " more."])
        >>> list(bounded_pieces(pieces, max_sentences=2, split=split_sentences))
        ['One.', ' Two words.']
    """
    raw = sent = ""
    try:
        for piece in raw_pieces:
            raw += piece
            text = " ".join(raw.split())
            sentences = split(text)
            if len(sentences) > max_sentences:  # the next sentence began: stop here
                rest = " ".join(sentences[:max_sentences])[len(sent) :]
                if rest:
                    yield rest
                return
            # only complete words are final: the last one may still grow
            end = len(text) if raw[-1:].isspace() else max(text.rfind(" "), 0)
            if end > len(sent):
                yield text[len(sent) : end]
                sent = text[:end]
        rest = " ".join(raw.split())[len(sent) :]
        if rest:
            yield rest
    finally:
        close = getattr(raw_pieces, "close", None)
        if close is not None:
            close()  # stops the generation when the bound ended the stream early


class TextStream(Iterator[str]):
    """A skill's generated pieces; ``usage`` is set once the stream ends or is closed.

    The tokens are counted with ``count`` (the generator's tokenizer): ``prompt`` when the
    stream starts, and the pieces sent, joined, when it ends. So a served stream is metered
    like a prediction (``slmstack.serve``): its tokens, its wall time, its cost.

    Example:
        >>> stream = TextStream(iter(["Hi", " there."]), count=lambda t: len(t.split()),
        ...                     prompt="Say hi")
        >>> "".join(stream), stream.usage.input_tokens, stream.usage.output_tokens
        ('Hi there.', 2, 2)
    """

    def __init__(self, pieces: Iterator[str], *, count: Callable[[str], int], prompt: str):
        self._pieces = pieces
        self._count = count
        self._sent: list[str] = []
        self._start = time.perf_counter()
        self._prompt_tokens = count(prompt)
        self.usage: Usage | None = None

    def __next__(self) -> str:
        try:
            piece = next(self._pieces)
        except StopIteration:
            self._end()
            raise
        self._sent.append(piece)
        return piece

    def close(self) -> None:
        """Stop the generation (closing the pieces) and count what was sent."""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()
        self._end()

    def _end(self) -> None:
        if self.usage is None:
            seconds = time.perf_counter() - self._start
            out = self._count("".join(self._sent))
            self.usage = Usage(self._prompt_tokens, out, latency_ms=seconds * 1000)
