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
    invent = Troubleshooter(runtime="test-invent").fit(docs)
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


def test_unknown_runtime_is_reported_when_first_needed(docs):
    ts = Troubleshooter(runtime="nope").fit(docs)
    with pytest.raises(ConfigError, match="unknown backend runtime 'nope'"):
        ts.predict(["paper jam"])


@pytest.mark.slow
def test_with_real_smollm2_greedy(docs, tmp_path):
    pytest.importorskip("llama_cpp")
    ts = Troubleshooter(generator="smollm2", max_tokens=96).fit(docs)
    first = ts.predict(["the printer says paper jam"])[0]
    again = load(ts.save(tmp_path / "ts")).predict(["the printer says paper jam"])[0]
    assert (first.text, first.abstained) == (again.text, again.abstained)  # greedy
    assert "Paper jam" in {r["title"] for r in first.data["retrieved"]}
    assert first.abstained in (None, "not_in_sources", "unsupported_answer")
    if first.abstained is None:
        ids = {r["id"] for r in first.data["retrieved"]}
        assert first.text.startswith("1. ")
        assert all(set(s["sources"]) <= ids for s in first.data["steps"])


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
