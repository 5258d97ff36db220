"""One copy in memory per distinct frozen encoder, however many skills use it.

Method: a process-wide table maps a *content key* to a loaded, frozen encoder module
(and a second one maps a key to its tokenizer). The key of an encoder is the sha256 of
its weight files (every ``*.safetensors`` shard, or the one pickled file), the config
with the keys that ``save_pretrained`` rewrites removed (``_name_or_path``,
``transformers_version``, ``dtype``, ...), and the load dtype. A tokenizer's key is the
sha256 of the files ``AutoTokenizer`` reads. Keys come from content, never from names:
ten ``head`` skills on ``minilm`` get one module, and two fine-tuned skills saved from
the same weights share one after loading, while a reference that resolves to other
weights (or a fine-tuned copy renamed after its base, ``ModelSource.with_provenance``)
never collides with it. File hashes are memoised (:mod:`.hashing`), so a key costs a
``stat`` once ``resolve`` has verified the weights.

Shared modules are frozen (``eval()``, ``requires_grad_(False)``) and recorded, so a
trainer can ask :func:`private_copy` for a module it may change: a deep copy of a shared
module (gradients back on), or the module itself when it is already private. Training
never mutates a shared module; only a loaded or frozen encoder is handed out.

Lifetime: weak references (``weakref.WeakValueDictionary``) rather than an explicit
``release``. The skill contract has no ``close()``: a skill is dropped like any Python
object, so a release call would be forgotten and its base pinned for the life of the
process (a server that reloads skills would grow at each reload). With weak values the
last skill to drop a base returns its memory at once (or at the next garbage
collection, for reference cycles), with nothing to call. The cost: a base used by no
one is loaded again by the next skill that asks, even a moment later.

Threads: one lock guards the tables; a load happens outside it, under a lock of its own
key, so two threads asking for one base load it once while other bases load in
parallel. Shared modules are only run in eval mode under ``torch.inference_mode`` by the
skills. Tokenizers are warmed with one call (no truncation, no padding, as every caller
asks) before they are shared: the fast tokenizer changes its Rust-side settings on the
first call, and doing that from two threads at once raises "Already borrowed".

Example:
    >>> from slmstack.models.resolve import resolve
    >>> src = resolve("minilm")  # doctest: +SKIP
    >>> shared_encoder(src) is shared_encoder(src)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import json
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from slmstack.errors import ModelError
from slmstack.models.encoder import load_encoder, load_tokenizer
from slmstack.models.hashing import sha256_file
from slmstack.models.resolve import ModelSource

__all__ = [
    "encoder_key",
    "is_shared",
    "private_copy",
    "private_encoders",
    "shared_encoder",
    "shared_tokenizer",
]

_DTYPE = "float32"  # load_encoder always loads fp32; bf16 is autocast, which leaves weights alone
# Config entries that save_pretrained rewrites without changing what the module computes.
_VOLATILE = frozenset({"_name_or_path", "transformers_version", "dtype", "torch_dtype",
                       "architectures"})  # fmt: skip
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
                    "config.json")  # fmt: skip

T = TypeVar("T")

_lock = threading.Lock()
_encoders: weakref.WeakValueDictionary[Hashable, nn.Module] = weakref.WeakValueDictionary()
_tokenizers: weakref.WeakValueDictionary[Hashable, Any] = weakref.WeakValueDictionary()
_shared: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_loading: dict[Hashable, threading.Lock] = {}
_sharing = contextvars.ContextVar("slmstack_share_encoders", default=True)


def encoder_key(source: ModelSource) -> tuple[str, ...]:
    """The content key of ``source``'s encoder: weight hashes, canonical config, dtype."""
    folder = source.path
    if source.safetensors:
        files = sorted(folder.glob("*.safetensors"))
    else:
        files = [source.weights] if source.weights is not None else []
    if not files:
        raise ModelError(f"{folder}: no weight file to load an encoder from")
    config_file = folder / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {config_file}: {exc}") from exc
    canonical = {k: v for k, v in config.items() if k not in _VOLATILE}
    return (*(sha256_file(f) for f in files), json.dumps(canonical, sort_keys=True), _DTYPE)


def _tokenizer_key(folder: Path) -> tuple[str, ...]:
    parts = [f"{p.name}:{sha256_file(p)}" for p in sorted(folder.glob("*.model"))]
    parts += [f"{n}:{sha256_file(folder / n)}" for n in _TOKENIZER_FILES if (folder / n).is_file()]
    return (str(folder.resolve()),) if not parts else tuple(parts)


def _get_or_load(
    table: weakref.WeakValueDictionary[Hashable, Any], key: Hashable, load: Callable[[], T]
) -> T:
    """The live entry of ``key``, or ``load()`` once (concurrent callers wait for it)."""
    with _lock:
        found = table.get(key)
        if found is not None:
            return found  # type: ignore[no-any-return]
        gate = _loading.setdefault(key, threading.Lock())
    with gate:
        try:
            with _lock:
                found = table.get(key)
            if found is not None:  # another thread loaded it while this one waited
                return found  # type: ignore[no-any-return]
            value = load()
            with _lock:
                table[key] = value
            return value
        finally:
            with _lock:
                if _loading.get(key) is gate:
                    del _loading[key]


def _load_frozen(source: ModelSource) -> nn.Module:
    module = load_encoder(source)
    module.eval()
    module.requires_grad_(False)
    with _lock:
        _shared.add(module)
    return module


def shared_encoder(source: ModelSource) -> nn.Module:
    """The frozen encoder of ``source``, loaded once per process and content key.

    The module is shared: run it in eval mode under ``torch.inference_mode``; to train,
    take :func:`private_copy` first. Inside :func:`private_encoders` this loads a copy of
    its own instead.
    """
    if not _sharing.get():
        return load_encoder(source)
    return _get_or_load(_encoders, encoder_key(source), lambda: _load_frozen(source))


def _load_warm_tokenizer(folder: Path) -> Any:
    tokenizer = load_tokenizer(folder)
    tokenizer([""], add_special_tokens=True, truncation=False)  # settle the Rust-side state
    return tokenizer


def shared_tokenizer(folder: Path) -> Any:
    """The tokenizer in ``folder``, loaded once per process and content of its files."""
    if not _sharing.get():
        return load_tokenizer(folder)
    return _get_or_load(_tokenizers, _tokenizer_key(folder), lambda: _load_warm_tokenizer(folder))


def is_shared(module: nn.Module) -> bool:
    """Whether ``module`` is handed out by :func:`shared_encoder` (and must not change)."""
    with _lock:
        return module in _shared


def private_copy(module: nn.Module) -> nn.Module:
    """A module the caller may train: a deep copy of a shared one, else ``module`` itself.

    The copy has gradients switched back on, as a freshly loaded encoder has.
    """
    if not is_shared(module):
        return module
    own = copy.deepcopy(module)
    own.requires_grad_(True)
    return own


@contextlib.contextmanager
def private_encoders() -> Iterator[None]:
    """Within this block (this thread or task), skills load encoders of their own.

    For measuring what sharing saves, or for a skill that will be changed in place.

    Example:
        >>> with private_encoders():  # doctest: +SKIP
        ...     own = load("runs/intent")
    """
    token = _sharing.set(False)
    try:
        yield
    finally:
        _sharing.reset(token)
