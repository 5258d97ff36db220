"""Streaming a generator's text with the same normalisation and bound as the whole text.

A skill that tidies its generated text (whitespace collapsed, cut after ``max_sentences``)
can still stream it, if each piece it sends is final: :func:`bounded_pieces` sends a word
once it is complete (the next piece could still extend it), and stops, closing the
generator, as soon as the sentence after the last allowed one begins. The pieces joined
equal the tidied whole text; a test checks it over every way of splitting a text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator


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
