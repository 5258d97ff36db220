from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from extract_fixtures import tiny_encoder, toy_sentences
from slmstack import ArtifactError, ConfigError, DataError, NotFittedError, load
from slmstack.data.tagging import (
    TaggedExample,
    read_conll,
    read_span_jsonl,
    read_tagged,
    spans_to_tags,
    tags_to_chunks,
)
from slmstack.skills._tokens import best_window, transition_mask, viterbi, windows
from slmstack.skills.tagger import EntityTagger


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


def make_tagger(encoder_dir: Path, **kw: object) -> EntityTagger:
    params: dict[str, object] = {
        "base": str(encoder_dir),
        "epochs": 8,
        "learning_rate": 3e-3,
        "head_learning_rate": 3e-2,
        "batch_size": 8,
        "max_length": 24,
        "stride": 6,
        "warmup_ratio": 0.0,
        "patience": 8,
        "val_fraction": 0.25,
        # at these learning rates input casing swamps the words of the tiny toy encoder;
        # the contract and the tests below turn it on
        "case_input": False,
    }
    params.update(kw)
    return EntityTagger(**params)  # type: ignore[arg-type]


def _source(encoder_dir: Path) -> tuple[object, Path]:
    from slmstack.models.resolve import resolve

    return resolve(str(encoder_dir)), encoder_dir


@pytest.fixture(scope="module")
def tagger(encoder_dir: Path) -> EntityTagger:
    return make_tagger(encoder_dir).fit(toy_sentences())


# ---------------------------------------------------------------- readers
def test_iob1_and_iob2_decode_to_the_same_spans():
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]
    assert (
        tags_to_chunks(iob2)
        == tags_to_chunks(iob1)
        == [
            ("PER", 0, 2),
            ("LOC", 3, 4),
            ("LOC", 4, 5),
        ]
    )


def test_strict_iob2_rejects_iob1_and_names_the_fix():
    with pytest.raises(DataError, match=r"IOB2 forbids.*scheme='iob1'"):
        tags_to_chunks(["O", "I-PER"], scheme="iob2")


def test_mismatched_token_and_tag_counts_is_a_clear_error():
    with pytest.raises(DataError, match="3 tokens but 2 tags"):
        TaggedExample.from_tokens(["a", "b", "c"], ["O", "O"])


def test_read_conll(tmp_path):
    path = tmp_path / "x.conll"
    path.write_text(
        "-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\nGerman JJ I-MISC\n\n"
        "Peter NNP I-PER\nBlackburn NNP I-PER\n"
    )
    data = read_conll(path)
    assert [ex.text for ex in data] == ["EU rejects German", "Peter Blackburn"]
    assert [(s.label, s.text) for s in data[0].spans] == [("ORG", "EU"), ("MISC", "German")]
    assert data[1].spans[0].text == "Peter Blackburn"
    assert data[0].source.endswith("x.conll:3")


def test_read_conll_missing_tag_column_points_at_the_line(tmp_path):
    path = tmp_path / "x.conll"
    path.write_text("EU NNP B-ORG\nrejects\n")
    with pytest.raises(DataError, match=r"x.conll:2: line has 1 column"):
        read_conll(path)


def test_read_conll_ragged_columns_and_bad_tags(tmp_path):
    ragged = tmp_path / "r.conll"
    ragged.write_text("EU NNP B-ORG\nrejects O\n")
    with pytest.raises(DataError, match="r.conll:2: line has 2 columns, earlier lines have 3"):
        read_conll(ragged)
    bad = tmp_path / "b.conll"
    bad.write_text("EU PERSON\n")
    with pytest.raises(DataError, match="'PERSON' is not IOB"):
        read_conll(bad)


def test_read_span_jsonl_checks_unicode_offsets(tmp_path):
    text = "Zoë 🙂 met José in Zürich"
    good = {"text": text, "spans": [{"start": 0, "end": 3, "label": "PER", "text": "Zoë"}]}
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(good, ensure_ascii=False) + "\n")
    [ex] = read_span_jsonl(path)
    assert ex.spans[0].text == "Zoë"
    # offsets in UTF-8 bytes (a common mistake) are caught
    start = len(text[:10].encode())
    bad = {
        "text": text,
        "spans": [{"start": start, "end": start + 4, "label": "PER", "text": "José"}],
    }
    path.write_text(json.dumps(bad, ensure_ascii=False) + "\n")
    with pytest.raises(DataError, match="offsets must count Unicode characters"):
        read_span_jsonl(path)


def test_read_span_jsonl_rejects_overlaps_and_out_of_range(tmp_path):
    path = tmp_path / "a.jsonl"
    rec = {"text": "New York", "spans": [{"start": 0, "end": 8, "label": "LOC"},
                                         {"start": 4, "end": 8, "label": "LOC"}]}  # fmt: skip
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(DataError, match="overlap"):
        read_span_jsonl(path)
    path.write_text(json.dumps({"text": "abc", "spans": [{"start": 1, "end": 9, "label": "X"}]}))
    with pytest.raises(DataError, match=r"outside the text \(length 3\)"):
        read_span_jsonl(path)
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        read_tagged(tmp_path / "a.csv")
    # a null or empty label had become the entity type "None" or "" (tags "B-None", "B-")
    for label in (None, "", " ", 3):
        path.write_text(json.dumps({"text": "abc", "spans": [{"start": 0, "end": 3, "label": label}]}))
        with pytest.raises(DataError, match=r"a.jsonl:1: span #1: label must be a non-empty string"):
            read_span_jsonl(path)


def test_spans_to_tags_round_trip():
    ex = TaggedExample.from_tokens(["Jo", "Ann", "in", "Rome"], ["B-PER", "I-PER", "O", "B-LOC"])
    assert spans_to_tags(ex.word_offsets(), ex.spans) == ["B-PER", "I-PER", "O", "B-LOC"]


def test_free_text_entities_are_scored_on_their_exact_boundaries():
    # Free text was scored on \w+ runs: "Kö" for "Köln" counted as a hit, and in
    # Japanese (no spaces: one run) a missed 東京 vanished from the gold and F1 was 1.0
    from slmstack.evaluation.metrics import tagger_metrics
    from slmstack.types import Span

    jp = TaggedExample("李さんは東京に住む", (Span("PER", 0, 1, "李"), Span("LOC", 4, 6, "東京")))
    de = TaggedExample("Ich wohne in Köln.", (Span("LOC", 13, 17, "Köln"),))
    whole = Span("PER", 0, 9, jp.text)
    assert tagger_metrics([jp], [[jp.spans[0]]])["recall"] == 0.5
    assert tagger_metrics([jp], [[whole]])["f1"] == 0.0
    assert tagger_metrics([de], [[Span("LOC", 13, 15, "Kö")]])["f1"] == 0.0
    assert tagger_metrics([jp, de], [list(jp.spans), list(de.spans)])["f1"] == 1.0
    # CoNLL tokens stay the unit: a span over part of a token covers the token
    conll = TaggedExample.from_tokens(["in", "Köln", "."], ["O", "B-LOC", "O"])
    assert tagger_metrics([conll], [[Span("LOC", 3, 5, "Kö")]])["f1"] == 1.0


# ---------------------------------------------------------------- windows and decoding
def test_windows_cover_every_position_with_overlap():
    starts = windows(100, 30, 10)
    assert starts[0] == 0 and starts[-1] == 70
    covered = {p for s in starts for p in range(s, s + 30)}
    assert covered == set(range(100))
    assert all(b - a == 20 for a, b in itertools.pairwise(starts[:-1]))
    # each position takes the window where it is most central
    assert best_window(25, starts, 30) == 1
    assert windows(5, 30, 10) == [0]


def test_words_keep_their_combining_marks(encoder_dir):
    # The uncased tokenizer strips accents, and its offsets ended a word before a
    # trailing combining mark: "Zoe\u0308" (decomposed) became "Zoe", Hindi lost its final
    # vowel sign, so predicted spans cut a letter and gold spans counted as misaligned.
    from slmstack.models.encoder import load_tokenizer
    from slmstack.skills._tokens import encode, word_tags
    from slmstack.types import Span

    texts = ["Zoe\u0308 met Ne\u0301e\u0301 .", "नमस्ते दिल्ली", "I \u2764\ufe0f Rome", "Café 😀 東京\tx\r\n"]
    encs = encode(load_tokenizer(encoder_dir), texts)
    words = [[t[a:b] for a, b in e.word_spans] for t, e in zip(texts, encs, strict=True)]
    assert words[0] == ["Zoe\u0308", "met", "Ne\u0301e\u0301", "."]
    assert words[1] == ["नमस्ते", "दिल्ली"]
    assert words[2] == ["I", "\u2764\ufe0f", "Rome"]
    assert words[3] == ["Café", "😀", "東", "京", "x"]
    gold = (Span("PER", 0, 4, "Zoe\u0308"), Span("PER", 9, 14, "Ne\u0301e\u0301"))
    assert word_tags(encs[0], gold) == (["B-PER", "O", "B-PER", "O"], 0)


def test_a_span_whose_first_word_is_taken_still_starts_with_b(encoder_dir):
    # "New Yor" + "k-based": both widen over "York"; the second had started with I-
    # after the first's I- (IOB2-invalid training labels the decoder can never output)
    from slmstack.models.encoder import load_tokenizer
    from slmstack.skills._tokens import encode, word_tags
    from slmstack.types import Span

    text = "New York-based"
    [enc] = encode(load_tokenizer(encoder_dir), [text])
    spans = (Span("LOC", 0, 7, "New Yor"), Span("MISC", 7, 14, "k-based"))
    assert word_tags(enc, spans) == (["B-LOC", "I-LOC", "B-MISC", "I-MISC"], 2)


def test_viterbi_never_starts_an_entity_with_i():
    tags = ["O", "B-PER", "I-PER"]
    # the most likely tag of each word alone would be O, I-PER: invalid
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.35, 0.55]])
    path = viterbi(np.log(probs), transition_mask(tags))
    assert [tags[i] for i in path] == ["O", "B-PER"]


# ---------------------------------------------------------------- the skill
def test_input_casing_starts_at_zero_and_is_learned(encoder_dir, tmp_path):
    tagger = make_tagger(encoder_dir, case_input=True, epochs=1)
    tagger._build(*_source(encoder_dir), n_tags=3)
    assert (
        float(tagger.net_.case_in.weight.detach().abs().sum()) == 0.0
    )  # pretrained start unchanged
    tagger = make_tagger(encoder_dir, case_input=True, learning_rate=1e-3, head_learning_rate=1e-2)
    tagger.fit(toy_sentences())
    weight = tagger.net_.case_in.weight.detach()
    assert float(weight[0].abs().sum()) == 0.0  # padding / special tokens stay at zero
    assert float(weight[1:].abs().sum()) > 0.0
    text = ["Anna flew to Rome on monday ."]
    tagger.save(tmp_path / "t")
    again = load(tmp_path / "t")
    assert again.case_input is True
    assert again.predict(text)[0].spans == tagger.predict(text)[0].spans


def test_tagger_saved_before_input_casing_still_loads(tagger, tmp_path):
    folder = tagger.save(tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    del config["params"]["case_input"]  # the format before the option existed
    (folder / "config.json").write_text(json.dumps(config))
    old = load(folder)
    assert old.case_input is False
    text = ["Anna flew to Paris on monday ."]
    assert old.predict(text)[0].spans == tagger.predict(text)[0].spans


def test_case_input_must_be_a_bool(encoder_dir):
    with pytest.raises(ConfigError, match="'case_input'.*True or False"):
        make_tagger(encoder_dir, case_input="yes").fit(toy_sentences())


def test_learns_and_reports_unicode_offsets(tagger):
    text = "Émma flew to Rome on monday . 🙂 ✓"
    [pred] = tagger.predict([text])
    got = [(s.label, s.text) for s in pred.spans]
    assert ("LOC", "Rome") in got
    for span in pred.spans:
        assert text[span.start : span.end] == span.text
        assert 0.0 < span.confidence <= 1.0
    assert tagger.metrics_["f1"] > 0.8


def test_long_input_is_windowed_not_truncated(tagger):
    sentence = "Anna flew to Paris on monday . "
    text = sentence * 12  # about 90 sub-words, window is 22
    [pred] = tagger.predict([text])
    assert not pred.warnings
    found = {s.start for s in pred.spans if s.label == "LOC" and s.text == "Paris"}
    # every repetition is found, including those at the end, past the first window
    paris = {i for i in range(len(text)) if text.startswith("Paris", i)}
    assert len(paris) == 12 and found == paris
    assert pred.usage.input_tokens > tagger.window_


def test_empty_text_and_text_without_entities(tagger):
    preds = tagger.predict(["", "   ", "on monday ."])
    assert [p.spans for p in preds] == [(), (), ()]
    # An empty text abstains (issue 10); it used to get confidence 1.0.
    assert [p.abstained for p in preds] == ["empty_input", "empty_input", None]
    assert preds[0].confidence == 0.0 and preds[2].confidence == 1.0


def test_bad_input_and_params(encoder_dir):
    with pytest.raises(NotFittedError, match="fit"):
        EntityTagger().predict(["x"])
    no_entities = [TaggedExample.from_tokens(["a", "b"], ["O", "O"])] * 3
    with pytest.raises(DataError, match="nothing to learn"):
        make_tagger(encoder_dir).fit(no_entities)
    with pytest.raises(DataError, match="no training examples"):
        make_tagger(encoder_dir).fit([])
    with pytest.raises(DataError, match="at least 2 annotated examples.*got 1"):
        make_tagger(encoder_dir).fit(toy_sentences(1))
    with pytest.raises(ConfigError, match="'stride' parameter of EntityTagger"):
        make_tagger(encoder_dir, stride=50).fit(toy_sentences(4))


def test_tampered_weights_are_refused(tagger, tmp_path):
    folder = tagger.save(tmp_path / "t")
    with (folder / "head.safetensors").open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(ArtifactError, match=r"head\.safetensors does not match the sha256"):
        load(folder)


def test_spans_inside_words_are_widened_with_a_warning(encoder_dir):
    from slmstack import DataWarning
    from slmstack.types import Span

    odd = TaggedExample("visit NewYork today", (Span("LOC", 9, 13, "York"),))
    with pytest.warns(DataWarning, match="1 entity spans do not start or end on a token"):
        tagger = make_tagger(encoder_dir, epochs=1).fit([*toy_sentences(8), odd])
    assert tagger.misaligned_ == 1
    # the warning says where: in a file of thousands of rows a count alone finds nothing
    odd = TaggedExample(odd.text, odd.spans, source="ner.jsonl:7")
    with pytest.warns(DataWarning, match=r"widened to whole tokens \(the first in ner.jsonl:7\)"):
        make_tagger(encoder_dir, epochs=1).fit([*toy_sentences(8), odd])


def test_spans_built_in_python_that_would_give_wrong_labels_are_refused(encoder_dir):
    # fit() took them as given: an overlapping span silently lost its label, UTF-16
    # offsets (a JavaScript tool's, after an emoji) were "widened" onto the wrong words
    from slmstack.types import Span

    text = "I 😀 met Anna in Paris"
    cases = [
        (TaggedExample(text, (Span("PER", 9, 13, "Anna"),)), r"training example #7: span #1 "
         r"says 'Anna' but text\[9:13\] is 'nna '; offsets must count Unicode characters"),
        (TaggedExample("Anna Smith", (Span("PER", 0, 10, "Anna Smith"), Span("LOC", 5, 10, "Smith")),
                       source="x.py:3"), r"x.py:3: spans 'Anna Smith' \(PER\) and 'Smith' \(LOC\) "
         "overlap; nested entities are not supported"),
        (TaggedExample("Anna", (Span("PER", 0, 9, "Anna"),)), r"span #1 \[0, 9\) is empty or outside"),
    ]  # fmt: skip
    for bad, message in cases:
        with pytest.raises(DataError, match=message):
            make_tagger(encoder_dir, epochs=1).fit([*toy_sentences(6), bad])
    with pytest.raises(DataError, match="validation example #1: span #1"):
        make_tagger(encoder_dir, epochs=1).fit(toy_sentences(6), validation=[cases[2][0]])


def test_an_entity_type_left_only_in_validation_is_named(encoder_dir):
    from slmstack.errors import DataWarning

    org = TaggedExample.from_tokens(["Acme", "hired", "me", "."], ["B-ORG", "O", "O", "O"])
    examples = [*toy_sentences(6), org]
    seed = next(s for s in range(100) if np.random.default_rng(s).permutation(7)[0] == 6)
    with pytest.warns(DataWarning, match=r"entity types \['ORG'\] have no example left"):
        make_tagger(encoder_dir, seed=seed, val_fraction=0.1, epochs=1).fit(examples)


def test_validation_never_reuses_the_training_examples_and_names_types_it_cannot_learn(
    encoder_dir,
):
    from slmstack.errors import DataWarning

    few = toy_sentences(4)
    tagger = make_tagger(encoder_dir, val_fraction=0.96, epochs=1).fit(few)
    assert (tagger.metrics_["n_train"], tagger.metrics_["n_val"]) == (1, 3)
    email = TaggedExample.from_tokens(["mail", "a@b.c", "now"], ["O", "B-EMAIL", "O"])
    with pytest.warns(DataWarning, match=r"validation holds entity types training has none of "
                      r"\(EMAIL\)"):  # fmt: skip
        make_tagger(encoder_dir, epochs=1).fit(few, validation=[*toy_sentences(2), email])


def test_an_empty_validation_list_is_refused_not_scored_perfect(encoder_dir):
    # it had loaded the encoder, then raised IndexError from inside the tokenizer
    with pytest.raises(DataError, match="validation is empty; pass None to hold out"):
        make_tagger(encoder_dir, epochs=1).fit(toy_sentences(4), validation=[])
