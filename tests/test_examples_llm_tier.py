"""The support-desk demo's LLM tier, against a scripted OpenAI-compatible server.

The demo's own workflow.yaml and run.py, with canned skills in place of the trained ones
(``main(skills=...)``) and an ``httpx2.MockTransport`` in place of the server
(``main(transport=...)``), so it runs in a second: the tier answers only the message whose
intent is unclear, its calls land in the ledger priced by machine time, and the summary's
share of requests and of cost is the ledger's. Without a server, or with one that fails,
the demo stops: nothing falls back to the human tier quietly.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import httpx2

from slmstack.costs import Ledger, load_prices, to_nano
from slmstack.types import LabelScore, Prediction, Span
from slmstack.workflows import Inbox

HERE = Path(__file__).resolve().parents[1] / "examples" / "support-desk"
URL = "http://llm.test/v1"
UNCLEAR = "I need help with my order"
REPLY = "Thanks for writing! Could you send us your order number and what went wrong?"
QUERIES = [
    "How long does standard delivery take?",  # faq, answered
    UNCLEAR,  # intent unsure → the LLM tier
    "My lamp hums at night",  # troubleshooting without a source → a person
    "Do you sell gift cards for weddings in Iceland?",  # faq without an answer → a person
    "Wie lange dauert der Standardversand?",  # German FAQ
]


def load_demo():
    spec = importlib.util.spec_from_file_location("support_desk_run", HERE / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Canned:
    """A skill answering from a table (text → prediction), else ``default``."""

    def __init__(self, produces, answers, default, classes=None):
        self.produces = frozenset(produces)
        self.answers = answers
        self.default = default
        if classes is not None:
            self.classes_ = list(classes)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return [self.answers.get(t, self.default) for t in texts]


def label(name: str, confidence: float) -> Prediction:
    return Prediction(label=name, confidence=confidence, scores=(LabelScore(name, confidence),))


def skills() -> dict[str, Canned]:
    intents = ["account", "complaint", "faq", "troubleshooting"]
    no_match = Prediction(abstained="no_match")
    faq = {"label", "confidence", "text", "data"}
    return {
        "lang": Canned(
            {"label"},
            {QUERIES[4]: label("de", 0.99)},
            label("en", 0.99),
            classes=["de", "en", "fr"],
        ),
        "intent": Canned(
            {"label", "scores"},
            {
                QUERIES[0]: label("faq", 0.95),
                UNCLEAR: label("complaint", 0.3),
                QUERIES[2]: label("troubleshooting", 0.9),
                QUERIES[3]: label("faq", 0.9),
            },
            label("faq", 0.9),
            classes=intents,
        ),
        "sentiment": Canned({"label"}, {}, label("neutral", 0.9)),
        "entities": Canned({"spans"}, {}, Prediction(spans=(Span("PRODUCT", 3, 7, "lamp"),))),
        "faq_en": Canned(
            faq,
            {QUERIES[0]: Prediction(label="delivery_time", confidence=0.9, text="3-5 days.")},
            no_match,
        ),
        "faq_de": Canned(faq, {}, Prediction(label="lieferzeit", confidence=0.9, text="3-5 Tage.")),
        "faq_fr": Canned(faq, {}, no_match),
        "troubleshooter": Canned({"text", "data"}, {}, Prediction(abstained="no_source")),
        "summarizer": Canned({"text"}, {}, Prediction(text="The customer is unhappy.")),
    }


def server(*, chat_status: int = 200, down: bool = False):
    """A scripted OpenAI-compatible server: its model list and one reply; records asks."""
    asked: list[dict] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        if down:
            raise httpx2.ConnectError("connection refused")
        if request.url.path == "/v1/models":
            return httpx2.Response(200, json={"object": "list", "data": [{"id": "smollm2"}]})
        asked.append(json.loads(request.content))
        if chat_status != 200:
            return httpx2.Response(chat_status, json={"error": "bad request"})
        time.sleep(0.02)  # a call that takes machine time, so that it costs something
        return httpx2.Response(200, json={
            "id": "c1", "object": "chat.completion", "created": 0, "model": "smollm2",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": REPLY}}],
            "usage": {"prompt_tokens": 61, "completion_tokens": 19, "total_tokens": 80},
        })  # fmt: skip

    handler.asked = asked
    return handler


def run_demo(tmp_path, *args, handler=None, queries=QUERIES):
    transport = httpx2.MockTransport(handler) if handler is not None else None
    argv = ["--no-trace", "--cache", str(tmp_path), *args, *queries]
    return load_demo().main(argv, skills=skills(), transport=transport)


def test_the_llm_tier_answers_only_the_unclear_message_and_shows_its_share(tmp_path, capsys):
    handler = server()
    assert run_demo(tmp_path, "--llm", URL, handler=handler) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps lines at 80 columns

    # asked once, about the unclear message, with the classifier's guess as context
    assert len(handler.asked) == 1
    system, user = handler.asked[0]["messages"]
    assert system["role"] == "system" and "Brightlane Home" in system["content"]
    assert UNCLEAR in user["content"] and "complaint, confidence 0.30)" in user["content"]
    assert handler.asked[0]["model"] == "smollm2"
    assert REPLY in out and "answered by the llm tier" in out

    # people get the other escalations, and not the unclear one
    reasons = sorted(p.reason for p in Inbox(f"sqlite:///{tmp_path / 'inbox.db'}").list())
    assert reasons == ["no FAQ answer", "no troubleshooting source"]

    # the ledger: one LLM row, priced as its time on the workflow's machine, exactly
    rows = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", create=False).rows()
    llm = [r for r in rows if r.kind == "escalate" and r.decision == "llm"]
    assert len(llm) == 1
    row = llm[0]
    assert (row.model, row.machine, row.tokens_in, row.tokens_out) == (
        "smollm2",
        "cpu-2vcpu",
        61,
        19,
    )
    assert row.compute_s >= 0.02
    assert row.cost_nusd == to_nano(load_prices().compute_cost("cpu-2vcpu", row.compute_s))
    assert sum(r.decision == "human" for r in rows if r.kind == "escalate") == 2

    # the summary's share is the ledger's: 1 of 5 requests, and its part of the cost
    total = sum((r.cost for r in rows if r.kind == "run"), Decimal(0))
    share = row.cost / total
    line = out[out.index("LLM tier") :]
    assert "(smollm2 at http://llm.test/v1, priced as its time on cpu-2vcpu)" in line
    assert "1 of 5 requests (20%)" in line
    assert f"({share:.0%} of the cost)" in line
    assert "61 prompt + 19 answer tokens" in line
    assert "40% handed to a person" in out


def test_a_run_that_never_needs_the_tier_says_so(tmp_path, capsys):
    handler = server()
    clear = [q for q in QUERIES if q != UNCLEAR]
    assert run_demo(tmp_path, "--llm", URL, handler=handler, queries=clear) == 0
    assert handler.asked == []
    out = " ".join(capsys.readouterr().out.split())
    assert "LLM tier (smollm2 at http://llm.test/v1): no request needed it." in out


def test_without_a_server_unclear_messages_go_to_a_person(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SLMSTACK_DEMO_LLM_URL", raising=False)
    handler = server()
    assert run_demo(tmp_path, handler=handler) == 0
    assert handler.asked == []
    out = " ".join(capsys.readouterr().out.split())
    assert "LLM tier" not in out and "60% handed to a person" in out
    reasons = {p.reason for p in Inbox(f"sqlite:///{tmp_path / 'inbox.db'}").list()}
    assert "intent unclear" in reasons


def test_a_server_that_is_not_running_stops_the_demo(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLMSTACK_DEMO_LLM_URL", URL)  # asked for by the environment
    assert run_demo(tmp_path, handler=server(down=True)) == 2
    err = capsys.readouterr().err
    assert f"server at {URL} could not be reached" in err
    assert "python -m llama_cpp.server --model" in err
    assert not (tmp_path / "inbox.db").exists()  # nothing ran, nothing was handed off


def test_a_failing_llm_call_is_an_error_not_a_hand_off(tmp_path, capsys):
    handler = server(chat_status=400)
    assert run_demo(tmp_path, "--llm", URL, handler=handler) == 1
    err = capsys.readouterr().err
    assert re.search(r"the LLM tier failed on 'I need help with my order'.*HTTP 400", err)
    reasons = {p.reason for p in Inbox(f"sqlite:///{tmp_path / 'inbox.db'}").list()}
    assert "intent unclear" not in reasons


def test_the_llm_machine_prices_the_tier(tmp_path, capsys):
    assert run_demo(tmp_path, "--llm", URL, "--llm-machine", "gpu-l4", handler=server()) == 0
    rows = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", create=False).rows()
    row = next(r for r in rows if r.kind == "escalate" and r.decision == "llm")
    assert row.machine == "gpu-l4"
    assert row.cost_nusd == to_nano(load_prices().compute_cost("gpu-l4", row.compute_s))
    # the SLM steps stay on the workflow's machine
    assert {r.machine for r in rows if r.kind == "skill"} == {"cpu-2vcpu"}


def test_an_unknown_llm_machine_is_refused_before_anything_runs(tmp_path, capsys):
    assert run_demo(tmp_path, "--llm", URL, "--llm-machine", "gpu-l5", handler=server()) == 2
    err = capsys.readouterr().err
    assert "'gpu-l5'" in err and "gpu-l4" in err
    assert not (tmp_path / "inbox.db").exists()


def test_the_plain_workflow_file_names_no_llm():
    """The LLM tier is added by run.py only when asked: the file itself calls no LLM."""
    text = (HERE / "workflow.yaml").read_text()
    assert "backends:" not in text and "to: llm" not in text


def test_texts_and_replies_are_printed_as_written_never_as_markup(tmp_path, capsys):
    """A customer's "[/]" or a model's "[/INST]" is text: rich markup would crash the demo
    after the request was run (its packet filed, its cost booked)."""
    handler = server()
    unclear = "[bold]help[/] with order [/]"

    def replying(request: httpx2.Request) -> httpx2.Response:
        response = handler(request)
        if request.url.path.endswith("/chat/completions"):
            body = json.loads(response.content)
            body["choices"][0]["message"]["content"] = "Your order number? [/INST]"
            return httpx2.Response(200, json=body)
        return response

    demo = load_demo()
    intent = skills()
    intent["intent"].answers[unclear] = label("complaint", 0.3)
    argv = ["--cache", str(tmp_path), "--llm", URL, unclear, "Where is my parcel [/]?"]
    transport = httpx2.MockTransport(replying)
    assert demo.main(argv, skills=intent, transport=transport) == 0
    out = capsys.readouterr().out
    assert "[bold]help[/] with order [/]" in out and "Where is my parcel [/]?" in out
    assert "Your order number? [/INST]" in out
