"""Paraphrase augmentation (``slmstack.distill.augment`` and ``slmstack augment``) against a
scripted generator: what is kept, what is dropped and counted, and a run that resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from fakes import FakeBackend
from slmstack.backends import Completion
from slmstack.backends.factory import runtimes
from slmstack.cli.app import app
from slmstack.distill.augment import augment, keep_rewrites
from slmstack.errors import BackendError, ConfigError
from slmstack.types import Example, Usage

EXAMPLES = [Example("where is my new card?", "card_arrival", "a:2"),
            Example("how do I top up by cheque?", "top_up", "a:3")]  # fmt: skip


def rewrites(*texts: str) -> str:
    return json.dumps({"rewrites": list(texts)})


def test_copies_empty_and_run_away_rewrites_are_dropped_and_counted():
    kept, dropped = keep_rewrites(
        "Where is my card?",
        ["where is my card", "My card has not arrived.", "  ", "my card has NOT arrived!",
         "word " * 40, "Has my card been sent?"],
    )  # fmt: skip
    assert kept == ["My card has not arrived.", "Has my card been sent?"]
    assert dropped == {"copy": 2, "empty": 1, "too_long": 1}


def test_each_example_gets_its_rewrites_under_its_label_and_the_schema_is_asked():
    fake = FakeBackend([rewrites("Has my card shipped?", "where is my new card"),
                        rewrites("Can I add money with a cheque?")])  # fmt: skip
    out = list(augment(EXAMPLES, fake, 2, seed=7))
    assert [(ex.text, [r.text for r in kept], d) for ex, kept, d in out] == [
        ("where is my new card?", ["Has my card shipped?"], {"copy": 1}),
        ("how do I top up by cheque?", ["Can I add money with a cheque?"], {}),
    ]
    assert {r.label for r in out[0][1]} == {"card_arrival"} and out[0][1][
        0
    ].source == "augmented:a:2"
    first = fake.requests[0]
    assert (
        first.json_schema is not None
        and first.json_schema["properties"]["rewrites"]["maxItems"] == 2
    )
    assert "where is my new card?" in first.messages[0].content and first.temperature > 0
    assert [r.seed for r in fake.requests] == [7, 8]
    again = FakeBackend([rewrites("x"), rewrites("y")])
    list(augment(EXAMPLES, again, 2, seed=7, positions=[5, 9]))
    assert [r.seed for r in again.requests] == [12, 16]


def test_a_cut_generation_is_counted_and_a_broken_one_raises():
    cut = Completion(text='{"rewrites": ["Has my ca', model="fake", usage=Usage(5, 5),
                     finish_reason="length")  # fmt: skip
    [(_, kept, dropped)] = list(augment(EXAMPLES[:1], FakeBackend([cut]), 2))
    assert kept == [] and dropped == {"cut": 1}
    with pytest.raises(BackendError, match="did not honour the schema"):
        list(augment(EXAMPLES[:1], FakeBackend(["not json at all"]), 2))
    with pytest.raises(ConfigError, match="per_example must be an int >= 1"):
        list(augment(EXAMPLES, FakeBackend(["{}"]), 0))


class Scripted(FakeBackend):
    """Fails on the third example (an interrupted run), answers everything else."""

    calls = 0
    seeds: ClassVar[list[int | None]] = []

    def __init__(self, model: str, **options: object):
        super().__init__(self.answer, name=model)

    def answer(self, request):  # type: ignore[no-untyped-def]
        Scripted.calls += 1
        Scripted.seeds.append(request.seed)
        if Scripted.calls == 3:
            raise BackendError("the generator went away")
        text = request.messages[0].content.rsplit("Message: ", 1)[1]
        return rewrites(f"{text} (please)", text)


runtimes.register("test-augment")(lambda model, **kw: Scripted(model, **kw))


def _four_intents(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Four labelled queries, the output file, and the command that rewrites them twice."""
    data = tmp_path / "intents.csv"
    data.write_text("text,label\n" + "".join(f"query number {i},intent{i % 2}\n" for i in range(4)))
    out = tmp_path / "aug.jsonl"
    args = ["augment", str(data), "--out", str(out), "--model", "m", "--runtime",
            "test-augment", "--per-example", "2", "--json"]  # fmt: skip
    return data, out, args


def test_cli_writes_as_it_goes_and_an_interrupted_run_goes_on(tmp_path: Path):
    data, out, args = _four_intents(tmp_path)
    Scripted.calls = 0
    first = CliRunner().invoke(app, args)
    assert first.exit_code != 0 and "the generator went away" in first.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["query number 0", "query number 0 (please)",
                                          "query number 1", "query number 1 (please)"]  # fmt: skip
    assert rows[1]["augmented_from"] == rows[0]["source"] and rows[1]["label"] == "intent0"
    with out.open("a") as f:
        f.write('{"text": "query number 2", "la')  # killed in the middle of a line
    Scripted.seeds.clear()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert Scripted.seeds == [2, 3]  # as one uninterrupted run seeds examples 2 and 3
    summary = json.loads(again.output)
    assert summary["already_done"] == 2 and summary["examples"] == 2
    assert "cost_usd" in summary and summary["prices"]  # every generation is costed
    assert summary["rewrites_kept"] == 2 and summary["dropped_copy"] == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows if r["augmented_from"] is None] == [
        f"query number {i}" for i in range(4)
    ]
    # the same data spelt another way is the same rows: nothing is bought again
    respelt = CliRunner().invoke(app, ["augment", str(tmp_path / "." / data.name), *args[2:]])
    assert json.loads(respelt.output)["already_done"] == 4, respelt.output
    itself = CliRunner().invoke(app, ["augment", str(out), "--out", str(out), *args[4:]])
    assert itself.exit_code == 2 and "is the data file itself" in itself.output
    kept = out.read_text()
    Scripted.calls = 2  # the next call fails: --force must not have emptied the file yet
    failed = CliRunner().invoke(app, [*args, "--force"])
    assert failed.exit_code != 0 and out.read_text() == kept
    bad = CliRunner().invoke(app, [*args, "--option", "no-equals-sign"])
    assert bad.exit_code == 2 and "is not key=value" in bad.output
    one_each = tmp_path / "one_each.csv"  # one example per label is what it is for
    one_each.write_text("text,label\nquery one,a\nquery two,b\n")
    res = CliRunner().invoke(app, ["augment", str(one_each), *args[2:], "--force"])
    assert res.exit_code == 0, res.output
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n,a\nquery two,b\n")
    res = CliRunner().invoke(app, ["augment", str(empty), *args[2:], "--force"])
    assert res.exit_code == 2 and "empty text" in res.output
    other = tmp_path / "someone_elses.jsonl"  # never appended to, never overwritten
    other.write_text('{"text": "mine", "label": "x"}\n')
    res = CliRunner().invoke(app, [*args[:3], str(other), *args[4:]])
    assert res.exit_code == 2 and "not a file `slmstack augment` wrote" in res.output
    assert other.read_text() == '{"text": "mine", "label": "x"}\n'
    table = tmp_path / "table.csv"  # not JSON at all, last line without a newline
    table.write_text("text,label\nhello,a\nlast row,b")
    res = CliRunner().invoke(app, [*args[:3], str(table), *args[4:]])
    assert res.exit_code == 2 and "not a file `slmstack augment` wrote" in res.output
    assert table.read_text() == "text,label\nhello,a\nlast row,b"


def test_going_on_with_other_settings_is_refused(tmp_path: Path):
    _, out, args = _four_intents(tmp_path)
    Scripted.calls = 0
    first = CliRunner().invoke(app, args)  # stops after two examples
    assert first.exit_code != 0 and out.read_text().count("\n") == 4
    settings = json.loads((tmp_path / "aug.jsonl.settings.json").read_text())
    assert (settings["model"], settings["per_example"]) == ("m", 2)
    kept = out.read_text()
    other = CliRunner().invoke(app, [*args[:-2], "3", "--json"])
    assert other.exit_code == 2 and "per_example=2" in other.output
    assert "per_example=3" in " ".join(other.output.split()) and out.read_text() == kept
    Scripted.calls = 2  # a --force run that fails before its first row keeps the old notes
    failed = CliRunner().invoke(app, [*args[:-2], "3", "--json", "--force"])
    assert failed.exit_code != 0 and out.read_text() == kept
    assert json.loads((tmp_path / "aug.jsonl.settings.json").read_text())["per_example"] == 2
    Scripted.calls = 0
    same = CliRunner().invoke(app, args)
    assert same.exit_code == 0 and json.loads(same.output)["already_done"] == 2


def test_rewrites_a_fallback_answered_are_priced_at_the_fallback_s_price():
    from decimal import Decimal

    from slmstack.costs import to_nano
    from slmstack.distill.augment import rewrite
    from slmstack.workflows.metering import Meter

    generator = FakeBackend([Completion(rewrites("where's my card?"), "backup-llm",
                                        Usage(30, 10), failed_over=("dear-llm: HTTP 503",))],
                            name="dear-llm")  # fmt: skip
    generator.base_url = "https://api.example.invalid/v1"  # type: ignore[attr-defined]
    backup = FakeBackend(["unused"], name="backup-llm")
    generator.fallbacks = [backup]  # type: ignore[attr-defined]
    prices = {"models": {"dear-llm": {"input_per_1k": "10", "output_per_1k": "30"},
                         "backup-llm": {"input_per_1k": "1", "output_per_1k": "2"}}}  # fmt: skip
    meter = Meter("augment", skills={}, backends={"generator": generator}, prices=prices)
    _, usage = rewrite(generator, "where is my new card?", 1)
    cost = meter.backend_cost("generator", usage.input_tokens, usage.output_tokens, 1.0,
                              usage.by_model)  # fmt: skip
    assert cost == to_nano((30 * Decimal(1) + 10 * Decimal(2)) / 1000)
