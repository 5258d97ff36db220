"""Token counts for a backend with no tokenizer of its own (a remote API), from a named one.

A remote server reports usage with each answer, but callers also need counts before a
call (to cut an input to a window, to estimate a price) and when a server reports none.
:func:`load_token_counter` turns a tokenizer reference into ``str -> int``:

* a GGUF generator (an alias such as ``"smollm2"``, a ``.gguf`` file or a folder with
  one): llama.cpp loads its vocabulary only (``vocab_only=True``: a fraction of a second,
  no weights), the tokenizer llama.cpp's own server uses, so the counts match its usage;
* anything else: a Hugging Face tokenizer (a local folder, or a hub id already in the
  cache) through ``transformers.AutoTokenizer``.

There is deliberately no estimate such as characters / 4: a wrong count is a wrong bill,
so a backend without a tokenizer raises an error that says how to name one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmstack.errors import ConfigError, ModelNotFoundError

TokenCounter = Callable[[str], int]


def load_token_counter(ref: str | Path) -> TokenCounter:
    """A function that counts the tokens of a text with tokenizer ``ref`` (no special tokens).

    Example:
        >>> count = load_token_counter("smollm2")  # doctest: +SKIP
        >>> count("hello world")  # doctest: +SKIP
        2
    """
    from slmstack.models.gguf import gguf_path

    try:
        path = gguf_path(ref)
    except (ConfigError, ModelNotFoundError) as gguf_problem:
        return _hf_counter(str(ref), gguf_problem)
    return _gguf_counter(path)


def _gguf_counter(path: Path) -> TokenCounter:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigError(
            f"counting tokens with the GGUF tokenizer of {path} needs llama-cpp-python. "
            "Install it with: pip install 'slmstack[llama]'"
        ) from exc
    from slmstack.backends.llama_cpp import track

    vocab = track(llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False))
    lock = threading.Lock()  # one llama.cpp object; keep tokenize calls from interleaving

    def count(text: str) -> int:
        with lock:
            return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    return count


def _hf_counter(ref: str, gguf_problem: Exception) -> TokenCounter:
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:  # `slmstack[llm]` alone: say which name was not found
        raise ConfigError(
            f"no tokenizer could be loaded from {ref!r}: it is not a GGUF generator "
            f"({gguf_problem}), and reading it as a Hugging Face tokenizer needs transformers. "
            "Name a GGUF alias or file (tokenizer='smollm2'), or install it with: "
            "pip install 'slmstack[train]'"
        ) from exc

    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(ref)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"no tokenizer could be loaded from {ref!r}: it is not a GGUF generator "
            f"({gguf_problem}) and not a Hugging Face tokenizer folder or cached hub id "
            f"({exc}). Name the served model's tokenizer, for example tokenizer='smollm2', "
            "a .gguf file, or a folder holding tokenizer.json."
        ) from exc

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    return count
