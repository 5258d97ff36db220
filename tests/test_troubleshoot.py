import json
import re

import pytest

from slmstack import ConfigError, DataError, NotFittedError, Troubleshooter, load, read_documents
from slmstack.backends import Backend, Completion, CompletionRequest, runtimes
from slmstack.retrieval import Document
from slmstack.types import Usage

MANUAL = """# Office printer

The printer is on the second floor.

## Paper jam

Open the front cover and pull out tray 2. Remove the jammed sheet slowly with both hands.
Close the cover and press the green start button.

## Toner low warning

Order a new toner cartridge from the supplies portal. Shake the new cartridge before you
insert it.
"""
TICKETS = [
    {
        "title": "VPN disconnects every hour",
        "text": "Update the VPN client to version 5. Then disable power saving on the wifi adapter.",
    },
    {"title": "Outlook will not open", "text": "Start Outlook in safe mode and remove add-ins."},
]
PROBLEMS = [
    "the printer says paper jam",
    "my vpn keeps dropping",
    "what is the best pizza topping in naples",
]


class EchoBackend(Backend):
    """Writes one step per source: its first sentence, citing it. Counts its calls."""

    calls = 0

    def __init__(self, model: str, mode: str = "echo"):
        self.name = f"echo-{model}"
        self.mode = mode

    def complete(self, request: CompletionRequest) -> Completion:
        type(self).calls += 1
        user = request.messages[-1].content
        sources = re.findall(r"^\[(\d+)\] (.+)$", user, flags=re.MULTILINE)
        if self.mode == "refuse":
            text = "NOT IN SOURCES"
        elif self.mode == "invent":
            text = "1. Reinstall the operating system from a USB stick.\n2. Call the vendor."
        else:
            lines = []
            for n, body in sources:
                sentence = body.split(": ", 1)[-1].split(". ")[0].rstrip(".")
                lines.append(f"{len(lines) + 1}. {sentence}. [{n}]")
            lines.append(f"{len(lines) + 1}. Sacrifice a goat to the printer gods. [1]")
            text = "Here is what to do:\n" + "\n".join(lines)
        return Completion(text, self.name, Usage(len(user.split()), len(text.split())))


for _mode in ("echo", "refuse", "invent"):
    runtimes.register(f"test-{_mode}")(lambda model, _m=_mode, **kw: EchoBackend(model, _m))


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    (folder / "printer.md").write_text(MANUAL)
    (folder / "tickets.jsonl").write_text("\n".join(json.dumps(t) for t in TICKETS) + "\n")
    return read_documents(folder)


@pytest.fixture(scope="module")
def ts(docs):
    return Troubleshooter(runtime="test-echo", generator="fake").fit(docs)


def test_steps_cite_the_retrieved_chunks_with_offsets(ts, docs):
    p = ts.predict(["the printer says paper jam"])[0]
    assert p.abstained is None
    assert p.text.startswith("1. ")
    assert "Open the front cover and pull out tray 2." in p.text
    citations = p.data["citations"]
    assert "Paper jam" in {c["title"] for c in citations}
    texts = {d.source: d.text for d in docs}
    for c in citations:
        assert texts[c["source"]][c["start"] : c["end"]] == c["text"]
    retrieved_ids = {r["id"] for r in p.data["retrieved"]}
    for step in p.data["steps"]:
        assert step["sources"] and set(step["sources"]) <= retrieved_ids
        assert step["support"] >= ts.min_support
    assert 0.0 < p.confidence <= 1.0
    assert p.usage.input_tokens > 0 and p.usage.output_tokens > 0


def test_unsupported_steps_are_dropped_with_a_warning(ts):
    p = ts.predict(["the printer says paper jam"])[0]
    assert "goat" in p.data["raw_output"]
    assert "goat" not in p.text
    assert any("were dropped" in w for w in p.warnings)


def test_abstains_without_calling_the_generator_when_nothing_is_relevant(ts):
    before = EchoBackend.calls
    p = ts.predict(["what is the best pizza topping in naples"])[0]
    assert p.abstained == "no_relevant_source"
    assert p.text is None and p.data["retrieved"] == []
    assert EchoBackend.calls == before


def test_generator_refusal_and_invented_steps_abstain(docs):
    refuse = Troubleshooter(runtime="test-refuse").fit(docs)
    assert refuse.predict(["paper jam in the printer"])[0].abstained == "not_in_sources"
    invent = Troubleshooter(runtime="test-invent", fallback="abstain").fit(docs)
    p = invent.predict(["paper jam in the printer"])[0]
    assert p.abstained == "unsupported_answer" and p.text is None


def test_bad_input(docs):
    with pytest.raises(NotFittedError, match="fit"):
        Troubleshooter().predict(["x"])
    with pytest.raises(DataError, match="no documents"):
        Troubleshooter().fit([])
    with pytest.raises(DataError, match="expected Document"):
        Troubleshooter().fit(["manual.md"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="read_documents"):
        Troubleshooter().fit("manuals/")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'min_support' parameter of Troubleshooter"):
        Troubleshooter(min_support=2.0).fit(docs)
    with pytest.raises(DataError, match="hold no text"):
        Troubleshooter().fit([Document("   ", "empty.txt")])


def test_unknown_runtime_is_refused_before_anything_is_fitted(docs):
    with pytest.raises(ConfigError, match="'runtime' parameter of Troubleshooter must be one of"):
        Troubleshooter(runtime="nope").fit(docs)


@pytest.mark.slow
def test_with_real_smollm2_greedy(docs, tmp_path):
    pytest.importorskip("llama_cpp")
    ts = Troubleshooter(generator="smollm2", max_tokens=96).fit(docs)
    first = ts.predict(["the printer says paper jam"])[0]
    again = load(ts.save(tmp_path / "ts")).predict(["the printer says paper jam"])[0]
    assert (first.text, first.abstained) == (again.text, again.abstained)  # greedy
    assert "Paper jam" in {r["title"] for r in first.data["retrieved"]}
    # The manual answers this question, so the user gets its steps: generated and
    # supported by the passage they cite, or (when none is) quoted from the manual.
    assert first.abstained is None and first.text.startswith("1. "), first.warnings
    ids = {r["id"] for r in first.data["retrieved"]}
    for step in first.data["steps"]:
        assert step["sources"] and set(step["sources"]) <= ids
        assert step["support"] >= ts.min_support, step
    assert "Paper jam" in {c["title"] for c in first.data["citations"]}, first.data["citations"]
    jam_steps = ("tray 2", "jammed sheet", "front cover", "green start button")
    assert any(s in first.text.lower() for s in jam_steps), first.text


def test_parse_steps_cleans_small_model_habits():
    from slmstack.retrieval import Chunk
    from slmstack.skills._grounding import parse_steps

    chunks = [
        Chunk("a", "Open tray 2. Remove the sheet.", "m.md", 0, 30, "Paper jam"),
        Chunk("b", "Shake the cartridge before you insert it.", "m.md", 40, 81, "Toner"),
    ]
    output = (
        "1. [1] Paper jam: Open tray 2.\n"
        "2. Shake the cartridge before you insert it.\n"
        "3. Shake the cartridge before you insert it. [2]\n"
        "4. [7] Remove the sheet.\n"
        "5. NOT IN SOURCES\n"
        "6. Remove the sh"
    )
    steps = parse_steps(output, chunks, truncated=True)
    assert [(s.text, s.cited) for s in steps] == [
        ("Open tray 2.", (1,)),
        ("Shake the cartridge before you insert it.", (2,)),  # attributed by word overlap
        ("Remove the sheet.", (1,)),  # [7] was not a source
    ]
    assert all(s.support == 1.0 for s in steps)


def test_empty_texts_abstain_without_the_generator_and_clone_gives_an_unfitted_copy(ts):
    from sklearn.base import clone

    before = EchoBackend.calls
    preds = ts.predict(["", "   "])
    assert [p.abstained for p in preds] == ["empty_input", "empty_input"]
    assert all(p.text is None for p in preds)
    assert EchoBackend.calls == before
    copy = clone(ts)
    assert copy.get_params() == ts.get_params()
    assert not copy.is_fitted
    with pytest.raises(NotFittedError, match="fit"):
        copy.predict(["paper jam"])


def test_saved_config_records_provenance(ts, docs, tmp_path):
    folder = ts.save(tmp_path / "ts")
    config = json.loads((folder / "config.json").read_text())
    assert config["provenance"]["rows"] == len(docs)
    assert config["provenance"]["base"]["ref"] == "minilm"
    assert config["chunks"] == len(ts.chunks_)
    assert (folder / "index.safetensors").is_file() and (folder / "chunks.jsonl").is_file()


# ------------------------------------------------- support of each step by its citation
# Scripted generators: each writes fixed steps, citing sources by their title.
STEP_SCRIPTS = {
    "mixed": (
        "1. Open the front cover and pull out tray 2. [{Paper jam}]\n"  # supported
        "2. Remove the jammed sheet slowly with both hands. [{Toner low warning}]\n"  # wrong
        "3. Toner low warning. [{Toner low warning}]\n"  # a heading is not an instruction
        "4. Press the green start button. [{Paper jam}]"  # supported
    ),
    "invented": (
        "1. Pull the printer away from the wall. [{Paper jam}]\n"
        "2. Call the vendor about the jam. [{Paper jam}]"
    ),
    "faithful": (
        "1. Open the front cover and pull out tray 2. [{Paper jam}]\n"
        "2. Remove the jammed sheet slowly. [{Paper jam}]\n"
        "3. Close the cover and press the green start button. [{Paper jam}]"
    ),
}


class ScriptedSteps(Backend):
    """Writes the script named by the model, with each {title} replaced by its number."""

    def __init__(self, model: str):
        self.name = model
        self.script = STEP_SCRIPTS[model]

    def complete(self, request: CompletionRequest) -> Completion:
        user = request.messages[-1].content
        numbers = {
            body.split(": ", 1)[0]: n
            for n, body in re.findall(r"^\[(\d+)\] (.+)$", user, flags=re.MULTILINE)
        }
        text = re.sub(r"\{([^}]+)\}", lambda m: numbers[m.group(1)], self.script)
        return Completion(text, self.name, Usage(len(user.split()), len(text.split())))


runtimes.register("test-steps")(lambda model, **kw: ScriptedSteps(model))
JAM = "the printer says paper jam, a sheet is stuck"


def steps_ts(docs, script: str, **params) -> Troubleshooter:
    # Every passage is shown (5 chunks), so each script can cite the one it names.
    params = {"top_k": 5, "min_similarity": -1.0, **params}
    return Troubleshooter(runtime="test-steps", generator=script, **params).fit(docs)


def test_a_step_is_checked_against_the_passage_it_cites(docs):
    p = steps_ts(docs, "mixed").predict([JAM])[0]
    assert p.data["retrieved"][0]["title"] == "Paper jam"
    assert p.text == (
        "1. Open the front cover and pull out tray 2.\n2. Press the green start button."
    )
    assert [s["support"] for s in p.data["steps"]] == [1.0, 1.0]
    dropped = {s["text"]: s["support"] for s in p.data["dropped_steps"]}
    # Its words are all in the paper-jam passage, but it cites the toner passage.
    assert dropped["Remove the jammed sheet slowly with both hands."] == 0.0
    assert dropped["Toner low warning."] < 0.5
    assert p.data["quoted"] is False
    assert "2 of 4 generated steps were dropped" in p.warnings[0]


def test_supported_steps_are_all_kept(docs):
    p = steps_ts(docs, "faithful").predict([JAM])[0]
    assert p.text.count("\n") == 2 and p.data["dropped_steps"] == []
    assert all(s["support"] >= 0.5 for s in p.data["steps"]) and p.warnings == ()
    assert {c["title"] for c in p.data["citations"]} == {"Paper jam"}


def test_when_no_step_is_supported_the_manual_is_quoted_with_its_citation(docs):
    p = steps_ts(docs, "invented").predict([JAM])[0]
    assert p.abstained is None and p.data["quoted"] is True
    assert [s["support"] for s in p.data["dropped_steps"]] == [0.0, 0.0]
    top = p.data["retrieved"][0]
    assert p.text.splitlines() == [
        "1. Open the front cover and pull out tray 2.",
        "2. Remove the jammed sheet slowly with both hands.",
        "3. Close the cover and press the green start button.",
    ]
    assert [c["id"] for c in p.data["citations"]] == [top["id"]]
    assert all(s["sources"] == [top["id"]] for s in p.data["steps"])
    assert "quotes the passage 'Paper jam' of" in p.warnings[-1]
    abstain = steps_ts(docs, "invented", fallback="abstain").predict([JAM])[0]
    assert abstain.abstained == "unsupported_answer" and abstain.text is None
    with pytest.raises(ConfigError, match="'fallback' parameter of Troubleshooter"):
        steps_ts(docs, "invented", fallback="guess")


def test_the_fallback_prefers_a_manual_passage_over_a_past_ticket():
    from slmstack.retrieval import Chunk
    from slmstack.skills._grounding import manual_passage, quote_steps

    ticket = Chunk("t", "Resolved: reset it.", "tickets.jsonl:3", 0, 19, "Reset")
    manual = Chunk("m", "Unplug it. Wait 30 seconds.\nPlug it in.", "m.md", 0, 39, "Power")
    assert manual_passage([ticket, manual]) == 2
    assert manual_passage([ticket, ticket]) == 1
    steps = quote_steps(manual, 2)
    assert [(s.text, s.cited) for s in steps] == [
        ("Unplug it.", (2,)),
        ("Wait 30 seconds.", (2,)),
        ("Plug it in.", (2,)),
    ]


def test_phrase_support_rejects_recombined_words():
    from slmstack.skills._support import stem, support

    passage = (
        "A blinking red light means the speaker has lost its wifi connection.\n"
        "Unplug the speaker for 30 seconds and plug it in again.\n"
        "If the light keeps blinking red, open the app, choose the speaker and select "
        "Reconnect wifi."
    )
    # SmolLM2's answer: every word is in the passage, few of its phrases are.
    garbled = "The speaker keeps blinking red, unplugging it again, and then unplugging it again."
    assert support(garbled, [passage]) == 3 / 8
    assert support("The speaker should be unplugged from the router.", [passage]) == 0.0
    assert support("Unplugging the speakers for 30 seconds.", [passage]) == 1.0
    assert support("Open the app and select Reconnect wifi.", [passage]) == 1.0
    assert support("Select Reconnect wifi in the app.", [passage]) == 0.75  # "wifi app"
    # a phrase does not run across sentences: "connection. Unplug"
    assert support("Connection unplug.", [passage]) == 0.0
    assert support("Reconnect.", [passage]) == 1.0 and support("Router.", [passage]) == 0.0
    assert [stem(w) for w in ("batteries", "unplugged", "flashes", "press")] == [
        "battery",
        "unplug",
        "flash",
        "press",
    ]


def test_a_step_that_says_the_opposite_of_its_passage_is_not_supported():
    from slmstack.skills._support import support

    manual = ["Do not open the toner door while printing. Unplug the printer for 30 seconds.",
              "If the light does not turn off, unplug the speaker."]  # fmt: skip
    assert support("Open the toner door while printing.", manual) == 0.0
    assert support("Don't unplug the printer.", manual) == 0.0
    assert support("Do not open the toner door while printing.", manual) == 1.0
    assert support("Never open the toner door while printing.", manual) == 1.0
    assert support("Unplug the printer for 30 seconds.", manual) == 1.0
    # a negation ends with its clause: the unplug step is what the manual says
    assert support("Unplug the speaker.", manual) == 1.0


def test_support_is_measured_in_any_script():
    from slmstack.skills._support import content_words

    assert content_words("Откройте лоток 2 и извлеките лист") >= {"откройте", "лоток", "лист"}
    assert content_words("紙詰まり: トレイを開く") != set()


def test_a_chunk_longer_than_the_encoders_window_is_named(docs):
    from slmstack.errors import DataWarning
    from slmstack.retrieval.chunking import Document

    chinese = Document("打印机卡纸时，请打开二号纸盒并取出卡住的纸张。" * 30, "zh.txt", "text", "zh")
    with pytest.warns(DataWarning, match=r"1 of \d+ chunks are longer than the encoder's window.*zh"):
        Troubleshooter(runtime="test-echo", generator="fake").fit([*docs, chinese])


def test_an_extractive_troubleshooter_quotes_the_manual_and_loads_no_generator(
    docs, tmp_path, monkeypatch
):
    from slmstack.backends import factory

    def no_backend(*args, **kwargs):
        raise AssertionError("an extractive troubleshooter must not load a generator")

    monkeypatch.setattr(factory, "load_backend", no_backend)
    ts = Troubleshooter(generator=None, top_k=5, min_similarity=-1.0).fit(docs)
    p = ts.predict([JAM])[0]
    top = p.data["retrieved"][0]
    assert p.abstained is None and p.data["quoted"] is True and not p.warnings
    assert p.text.splitlines() == [
        "1. Open the front cover and pull out tray 2.",
        "2. Remove the jammed sheet slowly with both hands.",
        "3. Close the cover and press the green start button.",
    ]
    assert [c["id"] for c in p.data["citations"]] == [top["id"]]
    assert all(s["sources"] == [top["id"]] and s["support"] == 1.0 for s in p.data["steps"])
    assert (p.usage.input_tokens, p.usage.output_tokens) == (0, 0)
    with pytest.raises(AttributeError, match="extractive"):
        ts.backend  # noqa: B018
    assert getattr(ts, "backend", None) is None  # what metering probes
    ts.save(tmp_path / "ts")
    again = load(tmp_path / "ts")
    assert again.generator is None
    assert again.predict([JAM])[0].text == p.text
    assert "extractive" in (tmp_path / "ts" / "model_card.md").read_text()
    with pytest.raises(ConfigError, match="or None for extractive answers"):
        Troubleshooter(generator="  ").fit(docs)
