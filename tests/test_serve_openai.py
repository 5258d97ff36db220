"""``POST /v1/chat/completions`` driven by the official ``openai`` client, unchanged.

A real server (uvicorn on a loopback port, in a thread of this process) serves a
workflow (``desk``), a Summarizer that streams (``summary``), one that checks its text
once generated and so cannot (``checked``), and a classifier (``intent``). The
Summarizers run on ``Scripted``, a generator registered as the runtime ``test-stream``
that writes its answer word by word, so no model is downloaded and each test knows what
the stream must hold.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import openai
import pytest
import uvicorn

from fixtures import TRAIN
from llm_server import free_port
from serve_doubles import WORKFLOW, Keywords
from slmstack import Summarizer
from slmstack.backends import Backend, Completion, CompletionRequest, runtimes
from slmstack.costs import Ledger
from slmstack.costs.ledger import LedgerRow
from slmstack.errors import DeadlineExceeded, Overloaded
from slmstack.serve import create_app
from slmstack.serve.openai_schemas import ChatCompletionChunk, ChatCompletionResponse
from slmstack.serve.streaming import StreamGate, ThreadStream
from slmstack.types import Usage

SUMMARY = "The card never arrived. The customer wants a new one. They wrote twice already."
WANT = "The card never arrived. The customer wants a new one."  # max_sentences=2
TICKET = "Hello, I ordered a card three weeks ago and it has still not arrived at my home."


class Scripted(Backend):
    """Writes :data:`SUMMARY` word by word; "explode" fails mid-stream, "slowly" is slow."""

    made: ClassVar[dict[str, Scripted]] = {}

    def __init__(self, model: str):
        self.name = model
        self.sent: list[str] = []
        self.closed = 0
        Scripted.made[model] = self

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, request: CompletionRequest) -> Completion:
        return Completion(SUMMARY, self.name, Usage(11, self.count_tokens(SUMMARY)))

    def stream(self, request: CompletionRequest) -> Iterator[str]:
        asked = request.messages[-1].content
        pause = 0.2 if "slowly" in asked else 0.002
        try:
            for i, word in enumerate(SUMMARY.split(" ")):
                if "explode" in asked and i == 2:
                    raise RuntimeError("the generator fell over")
                self.sent.append(word)
                yield word + " "
                time.sleep(pause)
        finally:
            self.closed += 1


runtimes.register("test-stream")(lambda model, **options: Scripted(model))
FOLDER: list[Path] = []  # the server's folder (its ledger)


def ledger_run(request_id: str) -> LedgerRow:
    """The run row of ``request_id``, once the server has flushed it (every second)."""
    deadline = time.monotonic() + 10
    while True:
        book = Ledger(f"sqlite:///{FOLDER[0] / 'ledger.db'}", create=False)
        try:
            rows = [r for r in book.rows() if r.request_id == f"{request_id}:0" and r.kind == "run"]
        finally:
            book.close()
        if rows or time.monotonic() > deadline:
            assert len(rows) == 1, f"{len(rows)} run rows for {request_id}"
            return rows[0]
        time.sleep(0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("serve-openai")
    FOLDER.append(folder)
    Keywords().fit(TRAIN).save(folder / "intent")
    Summarizer(model="streamy", runtime="test-stream", max_sentences=2, max_copied=None).fit(
        []
    ).save(folder / "summary")
    Summarizer(model="careful", runtime="test-stream", max_sentences=2).fit([]).save(
        folder / "checked"
    )
    (folder / "desk.yaml").write_text(WORKFLOW.format(skill=folder / "intent"))
    config = folder / "serve.yaml"
    config.write_text(
        "skills: {intent: intent, summary: summary, checked: checked}\n"
        "workflows: {desk: desk.yaml}\n"
        "ledger: sqlite:///ledger.db\ninbox: sqlite:///inbox.db\n"
    )
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port,
                                       log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1"
    uv.should_exit = True
    thread.join(30)


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server, api_key="unused", max_retries=0)


def ask(text: str, system: str = "You are a support desk.") -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


# ---------------------------------------------------------------------- workflows
def test_a_workflow_answers_with_usage_and_slmstack_extras(client, server):
    out = client.chat.completions.create(model="desk", messages=ask("my card has not arrived"))
    assert out.choices[0].message.content == "Your card is on its way."
    assert out.choices[0].finish_reason == "stop" and out.model == "desk"
    assert out.usage.prompt_tokens == 5 and out.usage.total_tokens == 5
    extra = out.model_extra["slmstack"]
    assert extra["kind"] == "workflow" and extra["status"] == "completed"
    assert extra["route"] == ["accept", "card"] and extra["cost"]["cost_nusd"] > 0
    assert [s["name"] for s in extra["trace"]][:1] == ["cascade"]
    raw = httpx.post(f"{server}/chat/completions",
                     json={"model": "desk", "messages": ask("refund my order please")})  # fmt: skip
    ChatCompletionResponse.model_validate(raw.json())  # the documented shape


def test_a_streamed_workflow_sends_its_answer_in_one_chunk_then_done(client):
    stream = client.chat.completions.create(
        model="desk", messages=ask("my card has not arrived"), stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert content == ["Your card is on its way."]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 5


# ---------------------------------------------------------------------- generative skills
def test_a_generative_skill_streams_its_tokens_as_they_come(client, server):
    whole = client.chat.completions.create(model="summary", messages=ask(TICKET))
    assert whole.choices[0].message.content == WANT
    assert whole.model_extra["slmstack"]["kind"] == "skill"
    backend = Scripted.made["streamy"]
    backend.sent.clear()
    chunks = list(
        client.chat.completions.create(model="summary", messages=ask(TICKET), stream=True)
    )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(pieces) >= 5 and "".join(pieces) == WANT
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "twice" not in backend.sent  # the bound stopped the generation
    with httpx.stream("POST", f"{server}/chat/completions",
                      json={"model": "summary", "messages": ask(TICKET), "stream": True}) as raw:  # fmt: skip
        assert raw.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in raw.iter_lines() if line]
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        ChatCompletionChunk.model_validate_json(event)  # the documented shape


def test_a_streamed_answer_is_metered_in_the_ledger_and_the_last_chunks(client):
    chunks = list(client.chat.completions.create(
        model="summary", messages=ask(TICKET), stream=True,
        stream_options={"include_usage": True},
    ))  # fmt: skip
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(WANT.split())
    stop = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    extra = stop.model_extra["slmstack"]
    assert extra["cost"]["tokens_out"] == len(WANT.split()) and extra["cost"]["latency_ms"] > 0
    row = ledger_run(extra["request_id"])
    assert (row.tokens_in, row.tokens_out) == (chunks[-1].usage.prompt_tokens, len(WANT.split()))
    assert row.tokens_in > len(TICKET.split())  # the prompt: instructions and the ticket
    assert row.cost_nusd == extra["cost"]["cost_nusd"] and row.compute_s > 0


def test_a_skill_that_checks_its_text_streams_it_in_one_checked_chunk(client):
    chunks = list(
        client.chat.completions.create(model="checked", messages=ask(TICKET), stream=True)
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert pieces == [WANT]


def test_a_failure_mid_stream_reaches_the_client_as_an_api_error(client):
    stream = client.chat.completions.create(
        model="summary", messages=ask("please explode now, it is urgent"), stream=True
    )
    with pytest.raises(openai.APIError, match="the generator fell over"):
        list(stream)
    # the slot was given back: the next stream runs
    again = client.chat.completions.create(model="summary", messages=ask(TICKET), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in again) == WANT


def test_a_client_that_hangs_up_stops_the_generation_and_frees_the_skill(client, server):
    backend = Scripted.made["streamy"]
    backend.sent.clear()
    closed = backend.closed
    body = {"model": "summary", "messages": ask("write slowly please"), "stream": True}
    with httpx.stream("POST", f"{server}/chat/completions", json=body) as raw:
        for line in raw.iter_lines():
            if '"content":"The' in line.replace(" ", ""):
                break  # hang up after the first token
    deadline = time.monotonic() + 10
    while backend.closed == closed:
        assert time.monotonic() < deadline, "the generation went on after the client left"
        time.sleep(0.05)
    assert len(backend.sent) < 5  # of 14 words
    request_id = json.loads(line.removeprefix("data: "))["id"].removeprefix("chatcmpl-")
    assert ledger_run(request_id).tokens_out < len(WANT.split())  # metered as far as it went
    again = client.chat.completions.create(model="summary", messages=ask(TICKET), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in again) == WANT


def test_a_stream_is_refused_not_run_while_the_ledger_cannot_be_written(client, monkeypatch):
    import slmstack.serve.state as state_module

    monkeypatch.setattr(state_module, "LEDGER_BACKLOG", 0)  # as if 100,000 rows waited
    backend = Scripted.made["streamy"]
    backend.sent.clear()
    with pytest.raises(openai.APIStatusError, match="ledger database cannot be written") as err:
        client.chat.completions.create(model="summary", messages=ask(TICKET), stream=True)
    assert err.value.status_code == 503 and err.value.response.headers["retry-after"] == "5"
    assert backend.sent == []  # nothing generated, nothing left unrecorded


# ---------------------------------------------------------------------- refusals
def test_the_openai_client_lists_and_retrieves_the_models(client):
    assert {m.id for m in client.models.list()} == {"intent", "summary", "checked", "desk"}
    card = client.models.retrieve("summary")
    assert (card.id, card.object, card.model_extra["kind"]) == ("summary", "model", "skill")
    assert "text" in card.model_extra["produces"]
    assert client.models.retrieve("desk").model_extra["kind"] == "workflow"
    with pytest.raises(openai.NotFoundError, match="no skill or workflow 'gpt-4' is served"):
        client.models.retrieve("gpt-4")


def test_an_unknown_model_is_a_404_listing_the_chat_models(client):
    with pytest.raises(openai.NotFoundError, match=r"they are: desk, checked, summary"):
        client.chat.completions.create(model="gpt-4o", messages=ask("hi"))
    with pytest.raises(openai.NotFoundError, match="does not generate text .* /v1/skills/intent"):
        client.chat.completions.create(model="intent", messages=ask("hi"))


def test_bad_requests_are_422_with_the_reason(client):
    with pytest.raises(openai.UnprocessableEntityError, match="no 'user' message"):
        client.chat.completions.create(model="desk", messages=[{"role": "system", "content": "x"}])
    with pytest.raises(openai.UnprocessableEntityError, match=r"messages\[1\].content is empty"):
        client.chat.completions.create(model="desk", messages=ask("   "))
    with pytest.raises(openai.UnprocessableEntityError, match="image_url"):
        client.chat.completions.create(model="desk", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}])  # fmt: skip
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="desk", messages=ask("card"), n=2)


def test_text_parts_are_joined_and_sampling_options_ignored(client):
    out = client.chat.completions.create(
        model="desk", temperature=0.7, max_tokens=3, top_p=0.5,
        messages=[{"role": "user", "content": [{"type": "text", "text": "my card"},
                                               {"type": "text", "text": "has not arrived"}]}],
    )  # fmt: skip
    assert out.choices[0].message.content == "Your card is on its way."


# ---------------------------------------------------------------------- the pieces
def test_the_stream_gate_bounds_the_queue_and_the_wait():
    async def main():
        gate = StreamGate("skill:s", queue_size=1)
        await gate.enter(time.monotonic() + 1)  # the one slot
        waiting = asyncio.ensure_future(gate.enter(time.monotonic() + 0.05))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded, match="1 streams to skill:s are waiting"):
            await gate.enter(time.monotonic() + 1)
        with pytest.raises(DeadlineExceeded, match="did not start before"):
            await waiting
        gate.leave()
        await gate.enter(time.monotonic() + 1)  # free again

    asyncio.run(main())


def test_a_thread_stream_hands_over_pieces_and_errors_and_stops_when_closed():
    closed = threading.Event()

    def endless() -> Iterator[str]:
        try:
            while True:
                yield "x"
                time.sleep(0.001)
        finally:
            closed.set()

    def broken() -> Iterator[str]:
        yield "a"
        raise ValueError("boom")

    async def main():
        stream = ThreadStream(endless)
        assert [await stream.next() for _ in range(3)] == ["x", "x", "x"]
        stream.close()
        failing = ThreadStream(broken)
        assert await failing.next() == "a"
        with pytest.raises(ValueError, match="boom"):
            await failing.next()

    asyncio.run(main())
    assert closed.wait(5)
