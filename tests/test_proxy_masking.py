"""Masking: personal data never reaches the database in clear, and the key brings it back.

A seeded set of 120 requests carries e-mail addresses, phone numbers in five formats,
valid IBANs and Luhn-valid card numbers (generated here, so each is real-shaped and
checksummed), and names after the cues the patterns know. The fake upstream echoes the
e-mail in its answer, so answers are masked too. After recording, no seeded value may be
found in any stored text, and every detector must come up empty once the tokens are
taken out.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from proxy_doubles import FakeUpstream, client, make_proxy
from slmstack.costs import Ledger
from slmstack.errors import ConfigError, DataError
from slmstack.proxy import (
    Masker,
    TrafficStore,
    find_pii,
    generate_key,
    key_from_env,
    strip_tokens,
    unmask,
)
from slmstack.proxy.pii import iban_valid, luhn_valid
from slmstack.types import Prediction, Span


def _iban(rng: random.Random, country: str, length: int) -> str:
    bban = "".join(rng.choice("0123456789") for _ in range(length - 4))
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(digits) % 97
    compact = f"{country}{check:02d}{bban}"
    return (
        " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
        if rng.random() < 0.5
        else compact
    )


def _card(rng: random.Random) -> str:
    body = [4] + [rng.randrange(10) for _ in range(14)]
    for check in range(10):
        digits = "".join(map(str, [*body, check]))
        if luhn_valid(digits):
            break
    sep = rng.choice([" ", "-", ""])
    return sep.join(digits[i : i + 4] for i in range(0, 16, 4))


def _phone(rng: random.Random) -> str:
    d = lambda n: "".join(rng.choice("0123456789") for _ in range(n))  # noqa: E731
    return rng.choice([
        f"+44 20 {d(4)} {d(4)}", f"+49 30 {d(8)}", f"({d(3)}) {d(3)}-{d(4)}",
        f"0{d(2)} {d(4)} {d(4)}", f"03-{d(8)}", f"+1-{d(3)}-{d(3)}-{d(4)}",
    ])  # fmt: skip


FIRST = ["Anna", "Maria", "John", "Peter", "Lucia", "Omar", "Sven", "Chloe"]
LAST = ["Berg", "Lopez", "Smith", "Novak", "Okafor", "Lindqvist", "Moreau", "Kowalski"]


def seeded(n: int = 120, seed: int = 7) -> tuple[list[str], list[str]]:
    """``n`` user messages, and every personal value they hold."""
    rng = random.Random(seed)
    texts, values = [], []
    for i in range(n):
        email = f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}{i}@example{rng.randrange(9)}.com"
        phone, card = _phone(rng), _card(rng)
        iban = _iban(rng, rng.choice(["DE", "GB", "FR", "NL"]), rng.choice([22, 27, 18]))
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        cue = rng.choice(
            ["My name is {}.", "Dear {},", "Regards,\n{}", "Name: {}", "Mr. {} called"]
        )
        texts.append(rng.choice([
            f"{cue.format(name)} Please refund {card} to IBAN {iban}; reach me at {email} or {phone}.",
            f"Card {card} was charged twice. {cue.format(name)} Phone {phone}, mail {email}, IBAN {iban}",
        ]))  # fmt: skip
        values += [email, phone, card, iban, name]
    return texts, values


def test_seeded_generators_are_valid():
    rng = random.Random(1)
    assert all(iban_valid(_iban(rng, "DE", 22)) for _ in range(50))
    assert all(luhn_valid(_card(rng).replace(" ", "").replace("-", "")) for _ in range(50))


def test_no_personal_value_is_stored_in_clear_and_the_key_restores_every_one(tmp_path):
    texts, values = seeded()
    key = generate_key()
    upstream = FakeUpstream(
        lambda text: (
            "We wrote to " + text.split("reach me at ")[-1].split(" ")[0]
            if "reach me at" in text
            else "Noted, " + text.split()[-1]
        )
    )

    async def main():
        async with (
            make_proxy(tmp_path, upstream, masker=Masker(key)) as proxy,
            client(proxy) as http,
        ):
            for text in texts:
                body = {
                    "model": "gpt-4o-mini",
                    "messages": [
                        {"role": "system", "content": "You help bank customers."},
                        {"role": "user", "content": text},
                    ],
                }
                r = await http.post("/v1/chat/completions", json=body)
                assert r.status_code == 200
            assert proxy.recorder.wait_idle()

    asyncio.run(main())
    # Forwarded unchanged: the upstream saw the clear text.
    assert [json.loads(r["body"])["messages"][1]["content"] for r in upstream.received] == texts
    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    rows = TrafficStore(url).rows()
    assert len(rows) == len(texts) and all(r.masked for r in rows)
    stored = [t for r in rows for t in (r.system, r.user, r.messages, r.params, r.response)]
    stored += [f"{r.reason} {r.decision}" for r in Ledger(url).rows()]
    blob = "\n".join(stored)
    leaked = sorted({v for v in values if v in blob})
    assert leaked == [], f"{len(leaked)} values stored in clear: {leaked[:5]}"
    found = [f for text in stored for f in find_pii(strip_tokens(text))]
    assert [f for f in found if f.kind != "NAME"] == []
    assert next(r.user for r in rows).count("<") >= 5  # five values, five tokens
    assert [unmask(r.user, key) for r in rows] == texts
    assert any("@example" in unmask(r.response, key) for r in rows)


def test_tagger_names_are_masked_beside_the_patterns():
    class Tagger:  # any skill whose predictions carry spans
        def predict(self, texts):
            out = []
            for text in texts:
                at = text.find("Greta")
                spans = (Span("PER", at, at + 5, "Greta"),) if at >= 0 else ()
                out.append(Prediction(spans=spans))
            return out

    key = generate_key()
    masked = Masker(key, tagger=Tagger()).mask_many(
        ["Greta wrote from greta@example.org", "no one"]
    )
    assert strip_tokens(masked[0]) == "<NAME> wrote from <EMAIL>"
    assert masked[1] == "no one"
    assert unmask(masked[0], key) == "Greta wrote from greta@example.org"


def test_checksums_keep_lookalikes_unmasked():
    text = "order 4111 1111 1111 1112 on 2024-01-15, total 1234.56, ref DE00 1234 5678 9012 3456 78"
    assert find_pii(text) == []


def test_keys_are_checked_and_a_wrong_key_cannot_unmask(monkeypatch):
    masked = Masker(generate_key()).mask("mail ana@example.com")
    with pytest.raises(DataError, match="does not decrypt with this key"):
        unmask(masked, generate_key())
    with pytest.raises(ConfigError, match="not a Fernet key.*keygen"):
        Masker("not-a-key")
    monkeypatch.delenv("SLMSTACK_MASK_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"\$SLMSTACK_MASK_KEY is not set.*keygen"):
        key_from_env("SLMSTACK_MASK_KEY")
    with pytest.raises(ConfigError, match="cannot mask"):
        Masker(generate_key(), kinds=["SSN"])


def test_cli_keygen_unmask_and_a_missing_upstream(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from slmstack.cli.app import app

    runner = CliRunner()
    key = runner.invoke(app, ["proxy", "keygen"]).output.strip()
    masked = Masker(key).mask("write to ana@example.com")
    monkeypatch.setenv("SLMSTACK_MASK_KEY", key)
    result = runner.invoke(app, ["proxy", "unmask", masked])
    assert result.exit_code == 0 and result.output == "write to ana@example.com"
    monkeypatch.setenv("OTHER_KEY", generate_key())
    wrong = runner.invoke(app, ["proxy", "unmask", "--key-env", "OTHER_KEY"], input=masked)
    assert wrong.exit_code == 2 and "does not decrypt" in wrong.output
    missing = runner.invoke(app, ["proxy"])
    assert missing.exit_code == 2 and "--upstream" in missing.output
    bad = runner.invoke(
        app,
        [
            "proxy",
            "--upstream",
            "http://x/v1",
            "--ledger",
            str(tmp_path / "p.db"),
            "--mask",
            "--mask-key-env",
            "NO_SUCH_KEY",
        ],
    )
    assert bad.exit_code == 2 and "$NO_SUCH_KEY is not set" in bad.output


def test_names_in_any_script_tool_arguments_and_request_fields_are_masked_too(tmp_path):
    key = generate_key()
    upstream = FakeUpstream(lambda text: "ok")
    secrets = ["José Álvarez", "Łukasz Nowak", "carol@example.org", "john.smith@example.com",
               "jane@example.net", "ana.lopez@example.com"]  # fmt: skip
    body = {
        "model": "gpt-4o-mini",
        "user": "john.smith@example.com",
        "metadata": {"customer_email": "jane@example.net"},
        "messages": [
            {"role": "user", "content": "My name is José Álvarez. Regards, Łukasz Nowak",
             "name": "ana.lopez@example.com"},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": "c1", "type": "function",
                "function": {"name": "mail", "arguments": '{"to": "carol@example.org"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sent"},
        ],
    }  # fmt: skip

    async def main():
        async with (
            make_proxy(tmp_path, upstream, masker=Masker(key)) as proxy,
            client(proxy) as http,
        ):
            assert (await http.post("/v1/chat/completions", json=body)).status_code == 200
            assert proxy.recorder.wait_idle()

    asyncio.run(main())
    [row] = TrafficStore(f"sqlite:///{tmp_path / 'proxy.db'}").rows()
    blob = "\n".join([row.system, row.user, row.messages, row.params, row.response])
    assert [s for s in secrets if s in blob] == []
    assert "Álvarez" not in blob and "Łukasz" not in blob
    assert unmask(row.messages, key).count("carol@example.org") == 1  # the key restores it


def test_a_stream_error_that_quotes_the_request_is_masked_before_it_is_stored():
    from slmstack.proxy.exchange import Parsed
    from slmstack.proxy.recording import _masked_texts

    parsed = Parsed(problem="the stream ended with an error: cannot call +44 20 7946 0958")
    _masked_texts([parsed], Masker(generate_key()))
    assert "7946" not in (parsed.problem or "") and parsed.problem.startswith("the stream ended")


def test_personal_data_in_a_prompts_fixed_text_still_makes_one_task(tmp_path):
    """Masked calls hold a new token per call; discovery and matching compare kinds."""
    from slmstack.proxy.discover import discover
    from slmstack.proxy.shadow import ShadowTask
    from slmstack.proxy.taskdata import RecordedTask, task_data

    system = "You are Acme's support bot. Our line is +44 20 7946 0958, mail help@acme.example."
    intents = ["card_arrival", "refund", "pin_blocked"]
    queries = ["where is my card", "send my money back", "my pin is blocked", "card not here",
               "refund please", "pin locked again", "card still missing", "money back now",
               "blocked pin help"]  # fmt: skip
    upstream = FakeUpstream(lambda text: intents[queries.index(text.split("Query: ")[1]
                                                               .split("\n")[0]) % 3])  # fmt: skip
    key = generate_key()

    async def main():
        async with make_proxy(tmp_path, upstream, masker=Masker(key)) as proxy, client(proxy) as http:
            for q in queries:
                body = {"model": "gpt-4o-mini", "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": f"Classify: {', '.join(intents)}.\nQuery: {q}\nIntent:"}]}  # fmt: skip
                assert (await http.post("/v1/chat/completions", json=body)).status_code == 200
            assert proxy.recorder.wait_idle()

    asyncio.run(main())
    rows = TrafficStore(f"sqlite:///{tmp_path / 'proxy.db'}").rows()
    assert len({r.system for r in rows}) == len(rows)  # every stored prompt differs...
    [task] = discover(rows)  # ...yet it is one task
    assert task.requests == len(queries) and "<PHONE>" in task.system and "<EMAIL>" in task.system
    assert task.kind == "classification"
    live = ShadowTask(task.task_id, task.kind, task.system, task.prefix, task.suffix, None)
    clear = f"Classify: {', '.join(intents)}.\nQuery: lost card\nIntent:"
    assert live.variable(system, clear) == "lost card"  # the proxy matches calls in clear text
    assert live.variable(system.replace("Acme", "Other"), clear) is None
    recorded = RecordedTask(task.task_id, task.kind, task.system, task.prefix, task.suffix,
                            tuple(intents), ())  # fmt: skip
    data = task_data(rows, recorded, key=key)
    assert sorted(data.texts) == sorted(queries)
