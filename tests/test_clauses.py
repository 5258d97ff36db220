from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from typer.testing import CliRunner

from extract_fixtures import tiny_encoder
from slmstack import ClauseExample, ClauseFinder, ConfigError, DataError, load
from slmstack.cli.app import app
from slmstack.data.clauses import document_of, label_clauses, locate, split_clauses
from slmstack.data.documents import read_clause_examples
from slmstack.data.validation import drop_duplicates

LAW = "This Agreement shall be governed by and construed in accordance with the laws of {}."
TERM = "Either party may terminate this Agreement for convenience upon {} days written notice."
CAP = "In no event shall either party's aggregate liability exceed the fees paid in the last {} months."
OTHER = [
    "The Supplier shall deliver the Products to the Customer's warehouse in {} on time.",
    "All invoices are payable within {} days of receipt by the Customer's accounts team.",
    "The parties shall meet quarterly in {} to review the performance of the services.",
]  # fmt: skip
PLACES = ["the State of New York", "England and Wales", "Delaware", "Ontario", "Bavaria", "Texas"]


def contract(i: int, *, law: bool = True, term: bool = True, cap: bool = False) -> str:
    parts = ["1. DEFINITIONS", OTHER[i % 3].format(PLACES[(i + 1) % 6])]
    if law:
        parts.append(LAW.format(PLACES[i % 6]))
    if term:
        parts.append(TERM.format(30 + i))
    if cap:
        parts.append(CAP.format(6 + i))
    parts.append(OTHER[(i + 1) % 3].format(10 + i))
    return "\n\n".join(parts)


def training(n: int = 12) -> list[ClauseExample]:
    out: list[ClauseExample] = []
    for i in range(n):
        text = contract(i, law=i % 3 != 0, term=i % 2 == 0, cap=i % 4 == 1)
        ann = {
            "Governing Law": [LAW.format(PLACES[i % 6])] if i % 3 != 0 else [],
            "Termination for Convenience": [TERM.format(30 + i)] if i % 2 == 0 else [],
            "Cap on Liability": [CAP.format(6 + i)] if i % 4 == 1 else [],
        }
        out += label_clauses(text, ann)[0]
    return out


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="module")
def finder(encoder_dir: Path) -> ClauseFinder:
    return ClauseFinder(base=str(encoder_dir), min_df=1).fit(training())


def test_split_joins_headings_and_cuts_long_paragraphs():
    text = (
        "1. TERM\n\nThe term is one year from the Effective Date.\n\n"
        + "A long sentence here. " * 20
    )
    spans = split_clauses(text, min_chars=20, max_chars=200)
    assert text[spans[0][0] : spans[0][1]].startswith("1. TERM\n\nThe term")
    assert all(b - a <= 200 for a, b in spans)
    # nothing is lost between clauses but whitespace
    assert "".join("".join(text[a:b] for a, b in spans).split()) == "".join(text.split())


def test_locate_ignores_whitespace_differences():
    text = "Governed by\n  the laws of   Texas."
    assert locate(text, "by the laws of Texas") == (9, len(text) - 1)
    assert locate(text, "laws of Ohio") is None


def test_finds_types_spans_and_absent_types(finder):
    text = contract(30, law=True, term=False)
    [pred] = finder.predict([text])
    laws = [s for s in pred.spans if s.label == "Governing Law"]
    assert len(laws) == 1 and laws[0].text == LAW.format(PLACES[0])
    assert text[laws[0].start : laws[0].end] == laws[0].text
    assert "Termination for Convenience" in pred.data["absent"]
    assert "Governing Law" not in pred.data["absent"]
    assert pred.data["n_clauses"] == 3  # the heading joins the clause after it
    [only] = finder.predict([text], types=["Termination for Convenience"])
    assert only.spans == () and only.data["absent"] == ["Termination for Convenience"]


def test_bad_input(finder, encoder_dir):
    with pytest.raises(ConfigError, match=r"unknown clause types \['Force Majeure'\]"):
        finder.predict(["x"], types=["Force Majeure"])
    with pytest.raises(ConfigError, match=r"unknown clause types \['Force Majeure'\]"):
        finder.predict([""], types=["Force Majeure"])  # refused before empty texts abstain
    [empty] = finder.predict([""])
    assert empty.spans == () and empty.abstained == "empty_input"
    with pytest.raises(DataError, match="has nothing to learn"):
        ClauseFinder(base=None).fit([ClauseExample("some clause text")] * 3)
    with pytest.raises(DataError, match="too few for the word features.*--set min_df=1"):
        ClauseFinder(base=None).fit(
            [ClauseExample("Governing law is Ohio.", ("Law",)), ClauseExample("Fees: ten.")]
        )
    every = [ClauseExample(f"Governed by the laws of State {i}.", ("Law",)) for i in range(6)]
    with pytest.raises(DataError, match="'Law' is on every one of the 6 clauses"):
        ClauseFinder(base=None).fit(every)


def test_thresholds_are_tuned_on_whole_held_out_contracts():
    def labelled(n: int, source: bool) -> list[ClauseExample]:
        out: list[ClauseExample] = []
        for i in range(n):
            ann = {"Governing Law": [LAW.format(PLACES[i % 6])]}
            out += label_clauses(contract(i), ann, source=f"c{i}.txt" if source else "")[0]
        return out

    finder = ClauseFinder(base=None, val_fraction=0.3, val_folds=1)
    examples = labelled(10, source=True)
    [(tr, va)] = finder._held_out(examples)
    docs = [document_of(ex) for ex in examples]
    assert {docs[i] for i in tr}.isdisjoint(docs[i] for i in va)
    assert len({docs[i] for i in va}) == 3 and len(tr) + len(va) == len(examples)
    # too few documents, or none named: clauses at random, so a contract is split
    for few in (labelled(4, source=True), labelled(10, source=False)):
        [(tr, va)] = finder._held_out(few)
        assert len(va) == int(0.3 * len(few)) and len(tr) + len(va) == len(few)
    # cross-fitting: every contract held out exactly once, never beside its own clauses
    folds = ClauseFinder(base=None, val_folds=5)._held_out(examples)
    assert len(folds) == 5
    held = np.concatenate([va for _, va in folds])
    assert sorted(held.tolist()) == list(range(len(examples)))
    for tr, va in folds:
        assert {docs[i] for i in tr}.isdisjoint(docs[i] for i in va)
        assert len({docs[i] for i in va}) == 2 and len(tr) + len(va) == len(examples)
    fitted = ClauseFinder(base=None, val_folds=5).fit(examples)
    unique = len(drop_duplicates(examples)[0])  # fit drops repeated clauses first
    assert fitted.metrics_["n_val"] == unique and fitted.metrics_["val_folds"] == 5


@pytest.mark.parametrize("text", ["", "  \n\t "])
def test_empty_text_abstains_and_clone_is_unfitted(finder, text):
    preds = finder.predict([contract(31), text], types=["Governing Law"])
    assert preds[0].abstained is None and preds[0].data["n_clauses"] > 0
    assert preds[1].abstained == "empty_input" and preds[1].spans == ()
    copy = clone(finder)
    assert copy.get_params() == finder.get_params() and not copy.is_fitted


def held_out(path: Path) -> Path:
    """Contracts the training file never shows: other places, terms and filler clauses."""
    rows = []
    for i, place in enumerate(["Quebec", "Scotland", "Victoria", "Lyon", "Tokyo", "Oregon"]):
        clauses = {}
        if i % 3 != 0:
            clauses["Governing Law"] = [LAW.format(place)]
        if i % 3 != 1:
            clauses["Termination for Convenience"] = [TERM.format(75 + i)]
        body = ["2. SERVICES", OTHER[i % 3].format(f"building {40 + i}")]
        body += [text for texts in clauses.values() for text in texts]
        rows.append({"text": "\n\n".join(body), "clauses": clauses})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_tfidf_only_and_cli(tmp_path):
    rows = [{"text": contract(i), "clauses": {"Governing Law": [LAW.format(PLACES[i % 6])],
             "Termination for Convenience": [TERM.format(30 + i)]}} for i in range(8)]  # fmt: skip
    rows.append({"text": "Payment is due in 30 days.", "labels": []})
    data = tmp_path / "clauses.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "skill"
    res = CliRunner().invoke(app, ["train", "clauses", str(data), "--out", str(out),
                                   "--base", "none", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    again = ["train", "clauses", str(data), "--out", str(out), "--base", "none"]
    res = CliRunner().invoke(app, again)
    assert res.exit_code == 2 and "already holds a saved skill" in res.output
    assert CliRunner().invoke(app, [*again, "--force"]).exit_code == 0
    skill = load(out)
    assert isinstance(skill, ClauseFinder) and skill.encoder_ is None
    report = skill.evaluate(held_out(tmp_path / "test.jsonl"))
    assert report["n"] == 14 and report["types_not_learned"] == []  # clauses, 8 of them labelled
    for name in ("Governing Law", "Termination for Convenience"):
        assert report["per_class"][name]["support"] == 4
        assert report["per_class"][name]["f1"] >= 0.8, report["per_class"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "abc", "clauses": {"X": ["not in text"]}}) + "\n")
    with pytest.raises(DataError, match="do not occur in the contract text"):
        read_clause_examples(bad)


def test_each_type_keeps_the_encoder_only_where_the_held_out_split_says_so(
    encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import numpy as np

    from slmstack.skills import clauses

    data = training()
    texts = [ex.text for ex in data]
    chosen = ClauseFinder(base=str(encoder_dir), min_df=1).fit(data)
    n_words = len(chosen.tfidf_.vocabulary_)
    vector = slice(n_words, n_words + chosen.encoder_.dim)  # then the position columns
    assert chosen.metrics_["types_using_encoder"] == chosen.uses_encoder_.sum()
    off = ~chosen.uses_encoder_
    assert not chosen.coef_[off, vector].any(), "a type without the encoder has vector weights"
    again = load(chosen.save(tmp_path / "finder"))
    assert list(again.uses_encoder_) == list(chosen.uses_encoder_)
    np.testing.assert_allclose(again.predict_clauses(texts), chosen.predict_clauses(texts))

    # The TF-IDF-only regression wins every held-out comparison (it is scored first, the
    # joined one second): then the finder must be exactly its TF-IDF peer.
    calls = iter(range(10_000))
    monkeypatch.setattr(clauses, "_f1", lambda pred, y: 1.0 if next(calls) % 2 == 0 else 0.0)
    dropped = ClauseFinder(base=str(encoder_dir), min_df=1).fit(data)
    peer = ClauseFinder(base=None, min_df=1).fit(data)
    assert not dropped.uses_encoder_.any() and not dropped.coef_[:, vector].any()
    assert dropped.coef_[:, vector.stop :].any(), "the TF-IDF-only refit lost the position"
    np.testing.assert_array_equal(dropped.thresholds_, peer.thresholds_)
    np.testing.assert_allclose(
        dropped.predict_clauses(texts), peer.predict_clauses(texts), atol=1e-6
    )
    assert ClauseFinder(base=None, min_df=1).fit(data).uses_encoder_.sum() == 0
    assert "none" in str(peer._card())


def test_encoder_weight_scales_the_vector_columns_and_is_saved(encoder_dir: Path, tmp_path: Path):
    data = training()
    texts = [ex.text for ex in data]
    one = ClauseFinder(base=str(encoder_dir), min_df=1, encoder_weight=1.0, position_weight=0.0)
    one.fit(data)
    half = ClauseFinder(base=str(encoder_dir), min_df=1, encoder_weight=0.5).fit(data)
    n_words = len(one.tfidf_.vocabulary_)
    vector = slice(n_words, n_words + one.encoder_.dim)
    full_cols = one._features(texts)[:, vector].toarray()
    np.testing.assert_allclose(half._features(texts)[:, vector].toarray(), 0.5 * full_cols)
    assert np.abs(full_cols).sum() > 0
    again = load(half.save(tmp_path / "half"))
    assert again.encoder_weight == 0.5
    np.testing.assert_allclose(again.predict_clauses(texts), half.predict_clauses(texts))
    # a finder saved before the parameter existed was fitted at full weight, and loads so
    folder = one.save(tmp_path / "before")
    config = json.loads((folder / "config.json").read_text())
    for name in ("encoder_weight", "val_folds", "position_weight"):
        del config["params"][name]
    (folder / "config.json").write_text(json.dumps(config))
    old = load(folder)
    assert (old.encoder_weight, old.val_folds, old.position_weight) == (1.0, 1, 0.0)
    np.testing.assert_allclose(old.predict_clauses(texts), one.predict_clauses(texts))
    with pytest.raises(ConfigError, match="encoder_weight"):
        ClauseFinder(base=None, encoder_weight=0.0).fit(data)


PARTIES = "This Agreement is made between the parties named below, each a party to it."


def positioned(i: int) -> tuple[str, dict[str, list[str]]]:
    """A contract that opens with PARTIES (labelled) and repeats it, word for word, in the
    middle (not labelled): only the clause's place tells the two apart."""
    parts = [PARTIES, OTHER[i % 3].format(PLACES[i % 6]), PARTIES, LAW.format(PLACES[i % 6])]
    text = "\n\n".join(parts)
    return text, {"Parties": [PARTIES], "Governing Law": [LAW.format(PLACES[i % 6])]}


def test_clause_position_columns_and_label_clauses_records_them():
    text, _ = positioned(0)
    clauses, _ = label_clauses(text, {"Parties": [PARTIES]}, source="c.txt")
    assert [ex.position for ex in clauses] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    # the snippet occurs twice; locate finds the first, so only the opening clause is labelled
    assert [ex.labels for ex in clauses] == [("Parties",), (), (), ()]
    from slmstack.skills._clause_fit import position_block

    block = position_block([(0, 20), (2, 20), (19, 20), (10, 20), None], 0.5)
    assert block.shape == (5, 14) and not block[4].any()
    assert block[0, [0, 4]].tolist() == [0.5, 0.5] and block[0].sum() == 1.0  # first, bin 0
    assert block[1, [2, 5]].tolist() == [0.5, 0.5]  # third clause, bin 1
    assert block[2, [3, 13]].tolist() == [0.5, 0.5]  # among the last three, bin 9
    assert block[3, 9] == 0.5 and block[3].sum() == 0.5  # the middle: bin 5 only
    with pytest.raises(DataError, match="0 <= index < count"):
        position_block([(4, 4)], 1.0)


def test_a_clause_is_told_apart_by_its_place_in_the_contract(tmp_path: Path):
    data: list[ClauseExample] = []
    for i in range(12):
        text, ann = positioned(i)
        data += label_clauses(text, ann, source=f"c{i}.txt")[0]
    assert data[0].labels == ("Parties",) and data[2].labels == ()  # same text, other place
    text, _ = positioned(40)
    for weight, expect in ((0.5, [PARTIES]), (1.0, [PARTIES]), (0.0, None)):
        finder = ClauseFinder(base=None, min_df=1, position_weight=weight).fit(data)
        [pred] = finder.predict([text], types=["Parties"])
        found = [s.text for s in pred.spans]
        if expect is None:  # without positions the two copies must be judged alike
            assert found in ([], [PARTIES, PARTIES]), found
        else:
            assert found == expect and pred.spans[0].start == 0, found
    assert finder.metrics_["clauses_with_position"] == 0  # position_weight 0: not used
    with pytest.raises(ConfigError, match="1 positions for 2 clauses"):  # checked all the same
        finder.predict_clauses([PARTIES, PARTIES], positions=[(0, 4)])
    on = ClauseFinder(base=None, min_df=1).fit(data)
    assert on.metrics_["clauses_with_position"] == len(drop_duplicates(data)[0])
    again = load(on.save(tmp_path / "finder"))
    assert again.position_weight == 0.5
    assert [s.start for s in again.predict([text])[0].spans if s.label == "Parties"] == [0]
    # ready-split clauses: the place is given, or judged on the text alone
    p = on.predict_clauses([PARTIES, PARTIES], positions=[(0, 4), (2, 4)])
    col = on.types_.index("Parties")
    assert p[0, col] > on.thresholds_[col] > p[1, col]
    assert on.predict_clauses([PARTIES])[0, col] == pytest.approx(
        on.predict_clauses([PARTIES], positions=[None])[0, col]
    )
    with pytest.raises(ConfigError, match="1 positions for 2 clauses"):
        on.predict_clauses([PARTIES, PARTIES], positions=[(0, 4)])
    with pytest.raises(ConfigError, match="position_weight"):
        ClauseFinder(base=None, position_weight=-1.0).fit(data)


def test_a_copy_at_another_place_is_still_a_duplicate():
    text, ann = positioned(0)
    first = label_clauses(text, ann, source="a.txt")[0]
    refiled = label_clauses("EXHIBIT 10.1\n\n" + text, ann, source="a(1).txt")[0]
    assert [ex.position for ex in refiled][:2] == [(0, 4), (1, 4)]  # the heading joins clause 0
    copy = label_clauses(text + "\n\n" + OTHER[2].format("Paris"), ann, source="b.txt")[0]
    assert copy[1].position == (1, 5) and first[1].position == (1, 4)
    more = [ex for i in range(1, 8) for ex in label_clauses(*positioned(i), source=f"c{i}")[0]]
    finder = ClauseFinder(base=None, min_df=1).fit(first + copy + more)
    # the 4 clauses of b.txt that a.txt already has, at other places, are dropped (the first
    # copy's place kept), as are the repeats inside the contracts (PARTIES twice each)
    placeless = [replace(ex, position=None) for ex in first + copy + more]
    assert finder.provenance_.duplicates_dropped == len(placeless) - len(
        drop_duplicates(placeless)[0]
    )
    assert finder.metrics_["clauses_with_position"] == len(drop_duplicates(placeless)[0])


def test_labelled_clause_rows_may_say_where_the_clause_sits(tmp_path: Path):
    path = tmp_path / "clauses.jsonl"
    rows = [
        {"text": PARTIES, "labels": ["Parties"], "position": [0, 4]},
        {"text": PARTIES, "labels": []},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first, second = read_clause_examples(path)
    assert first.position == (0, 4) and second.position is None
    for bad in ([4, 4], [-1, 3], [1], ["0", "3"], [True, 3], "0/3"):
        path.write_text(json.dumps({"text": PARTIES, "labels": [], "position": bad}) + "\n")
        with pytest.raises(DataError, match=r"'position' must be \[index, count\]") as err:
            read_clause_examples(path)
        assert "row 1" in str(err.value) or ":1" in str(err.value), str(err.value)


def test_training_and_evaluation_split_contracts_as_the_finder_does(tmp_path):
    # --set min_chars=10: a heading ("1. DEFINITIONS") is a clause of its own in predict,
    # so it must be one in the training and evaluation clauses too
    rows = [{"text": contract(i), "clauses": {"Governing Law": [LAW.format(PLACES[i % 6])],
             "Termination for Convenience": [TERM.format(30 + i)]}} for i in range(8)]  # fmt: skip
    data = tmp_path / "clauses.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "skill"
    res = CliRunner().invoke(app, ["train", "clauses", str(data), "--out", str(out), "--base",
                                   "none", "--set", "min_chars=10"])  # fmt: skip
    assert res.exit_code == 0, res.output
    skill = load(out)
    texts = {r["text"][a:b] for r in rows for a, b in split_clauses(r["text"], min_chars=10)}
    assert skill.provenance_.rows == len(texts)  # one row per distinct clause
    test = held_out(tmp_path / "test.jsonl")
    n = sum(pred.data["n_clauses"] for pred in skill.predict(
        [json.loads(line)["text"] for line in test.read_text().splitlines()]))  # fmt: skip
    assert skill.evaluate(test)["n"] == n == 20


def test_the_generic_trainers_split_contracts_as_the_finder_does(tmp_path):
    # `slmstack train slmstack.ClauseFinder.v1 --set min_chars=10` and a workflow's
    # `train:` read whole contracts through the skill, with its own min_chars
    rows = [{"text": contract(i), "clauses": {"Governing Law": [LAW.format(PLACES[i % 6])],
             "Termination for Convenience": [TERM.format(30 + i)]}} for i in range(8)]  # fmt: skip
    data = tmp_path / "clauses.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = {r["text"][a:b] for r in rows for a, b in split_clauses(r["text"], min_chars=10)}
    default = {r["text"][a:b] for r in rows for a, b in split_clauses(r["text"])}
    assert len(texts) > len(default)  # the setting changes the clauses
    out = tmp_path / "skill"
    res = CliRunner().invoke(app, ["train", "slmstack.ClauseFinder.v1", str(data), "--out",
                                   str(out), "--set", "base=none", "--set", "min_chars=10"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert load(out).provenance_.rows == len(texts)
    finder = ClauseFinder(base=None, min_chars=10)
    assert {ex.text for ex in finder.training_data(data)} == texts
    with pytest.raises(ConfigError, match="set min_chars once"):
        finder.training_data(data, min_chars=40)
    from slmstack.workflows import load_workflow

    (tmp_path / "wf.yaml").write_text(
        f"skills:\n  clauses: {{kind: slmstack.ClauseFinder.v1, train: {data},\n"
        "            params: {base: null, min_chars: 10}}\nsteps: [{skill: clauses}]\n"
    )
    with load_workflow(tmp_path / "wf.yaml") as wf:
        assert wf.skills["clauses"].provenance_.rows == len(texts)
