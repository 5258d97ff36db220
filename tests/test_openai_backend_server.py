"""The OpenAI-compatible backend against a real llama.cpp server (``tests/llm_server.py``):
usage, cut answers, JSON-constrained output, token counts, log probabilities, failing over
from a dead endpoint, and a summariser configured from workflow YAML.
"""

from __future__ import annotations

import textwrap
from collections import Counter

import httpx
import pytest

from llm_server import MODEL, ask, free_port, llm_url  # noqa: F401  (llm_url is a fixture)
from slmstack.backends import load_backend, parse_json_output
from slmstack.backends.openai_compat import OpenAICompatBackend
from slmstack.errors import BackendError


@pytest.fixture(scope="module")
def served(llm_url):  # noqa: F811
    llm = load_backend(
        MODEL,
        runtime="openai",
        shared=False,
        base_url=llm_url,
        api_key_env=None,
        tokenizer="smollm2",
        json_format="json_object",
    )
    yield llm
    llm.close()


def test_server_chat_completion_reports_usage(served, llm_url):  # noqa: F811
    # (no reproducibility check: the server reuses its prompt cache, which flips near-ties)
    out = served.complete(ask("Name three colours.", max_tokens=12))
    assert out.text.strip()
    assert (out.model, out.endpoint, out.usage_source) == (MODEL, llm_url, "backend")
    # the chat template wraps the message, so the prompt is longer than its text
    assert out.usage.input_tokens > served.count_tokens("Name three colours.")
    assert 0 < out.usage.output_tokens <= 12


def test_server_usage_counts_a_cut_answer(served):
    out = served.complete(ask("Write a long story about a dragon.", max_tokens=5))
    assert (out.finish_reason, out.usage.output_tokens) == ("length", 5)


def test_server_json_schema_constrained_completion(served):
    schema = {
        "type": "object",
        "required": ["sentiment", "urgent"],
        "properties": {
            "sentiment": {"enum": ["positive", "neutral", "negative"]},
            "urgent": {"type": "boolean"},
        },
    }
    req = ask(
        "My phone arrived broken and I am furious. Describe this as JSON.",
        max_tokens=40,
        json_schema=schema,
    )
    data = parse_json_output(served.complete(req), req)
    assert data["sentiment"] in {"positive", "neutral", "negative"}
    assert isinstance(data["urgent"], bool)


def test_server_that_wants_json_object_says_so(llm_url):  # noqa: F811
    llm = OpenAICompatBackend(MODEL, base_url=llm_url, api_key_env=None, retries=0)
    with pytest.raises(BackendError, match="HTTP 500.*wants json_format='json_object'"):
        llm.complete(ask("x", json_schema={"type": "object"}))


def test_server_count_tokens_matches_the_servers_tokenizer(served, llm_url):  # noqa: F811
    root = llm_url.removesuffix("/v1")
    for text in ["hello world", "Ünïcode, emoji 🙂 and <|im_start|> tokens", "x " * 50]:
        counted = httpx.post(f"{root}/extras/tokenize/count", json={"input": text}, timeout=30)
        assert served.count_tokens(text) == counted.json()["count"], text


def test_server_log_probabilities(served):
    out = served.complete(ask("Answer yes or no: is the sky blue?", max_tokens=3, logprobs=3))
    assert out.logprobs is not None and len(out.logprobs) == out.usage.output_tokens
    for token in out.logprobs:
        assert token.logprob <= 0 and 1 <= len(token.top) <= 3
        assert [p for _, p in token.top] == sorted((p for _, p in token.top), reverse=True)


def test_server_answers_after_a_dead_endpoint(llm_url):  # noqa: F811
    dead = f"http://127.0.0.1:{free_port()}/v1"
    llm = OpenAICompatBackend(
        "nobody",
        base_url=dead,
        api_key_env=None,
        retries=0,
        fallbacks=[{"model": MODEL, "base_url": llm_url, "api_key_env": None}],
    )
    out = llm.complete(ask("Say hi.", max_tokens=4))
    assert (out.model, out.endpoint) == (MODEL, llm_url) and out.text
    assert len(out.failed_over) == 1 and "could not be reached" in out.failed_over[0]


def test_server_summarizer_from_workflow_yaml(tmp_path, llm_url):  # noqa: F811
    from slmstack.workflows import load_workflow

    # a served model is priced by the time of the machine it runs on
    (tmp_path / "prices.yaml").write_text(f"models:\n  {MODEL}: {{machine: cpu-2vcpu}}\n")
    path = tmp_path / "wf.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        prices: prices.yaml
        skills:
          summary:
            kind: slmstack.Summarizer.v1
            params:
              model: {MODEL}
              runtime: openai
              max_sentences: 1
              backend_options: {{base_url: "{llm_url}", api_key_env: null, tokenizer: smollm2}}
        steps: [summary]
        """)
    )
    wf = load_workflow(path)
    result = wf.run("My order 123 arrived broken. I want a replacement, not a refund.")
    assert isinstance(result.answer, str) and result.answer.strip()
    assert Counter(type(s).__name__ for s in wf.skills.values()) == {"Summarizer": 1}
