import json

import numpy as np
import pytest

from slmstack import ConfigError, DataError, DataWarning
from slmstack.retrieval import (
    Document,
    KBEntry,
    VectorIndex,
    chunk_documents,
    read_documents,
    read_kb,
    validate_kb,
)


def _unit(rows):
    m = np.array(rows, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


# ---------------------------------------------------------------- knowledge-base readers
def test_csv_rows_sharing_an_id_are_phrasings_of_one_entry(tmp_path):
    path = tmp_path / "kb.csv"
    path.write_text(
        "id,question,answer,alternates\n"
        'pw,How do I reset my password?,Use the reset link.,"forgot password|lost password"\n'
        "pw,I cannot log in,,\n"
        "ship,How long is shipping?,Three days.,\n"
    )
    kb = read_kb(path)
    assert [e.id for e in kb] == ["pw", "ship"]
    assert kb[0].questions == (
        "How do I reset my password?",
        "forgot password",
        "lost password",
        "I cannot log in",
    )
    assert kb[0].answer == "Use the reset link."
    assert kb[0].source.endswith("kb.csv:2")


def test_jsonl_and_markdown_knowledge_bases(tmp_path):
    jl = tmp_path / "kb.jsonl"
    jl.write_text(
        json.dumps({"question": "Opening hours?", "answer": "9 to 5.", "alternates": ["when open"]})
        + "\n"
    )
    kb = read_kb(jl)
    assert kb[0].id == "opening-hours" and kb[0].alternates == ("when open",)
    md = tmp_path / "faq.md"
    md.write_text(
        "# Billing\n\n## How do I pay?\nBy card or transfer.\n\n## Can I get an invoice?\n"
        "Yes, from the Orders page.\n"
    )
    kb = read_kb(md)
    assert [(e.question, e.answer) for e in kb] == [
        ("How do I pay?", "By card or transfer."),
        ("Can I get an invoice?", "Yes, from the Orders page."),
    ]


def test_missing_column_names_the_columns_present(tmp_path):
    path = tmp_path / "kb.csv"
    path.write_text("q,a\nhello,world\n")
    with pytest.raises(DataError, match=r"missing question column 'question'.*'q', 'a'"):
        read_kb(path)


def test_empty_kb_and_empty_answer_are_refused(tmp_path):
    path = tmp_path / "kb.csv"
    path.write_text("question,answer\n")
    with pytest.raises(DataError, match="no rows"):
        read_kb(path)
    with pytest.raises(DataError, match="knowledge base is empty"):
        validate_kb([])
    path.write_text("question,answer\nWhat?,\n")
    with pytest.raises(DataError, match="has no answer"):
        read_kb(path)


def test_same_question_in_two_entries_is_an_error(tmp_path):
    path = tmp_path / "kb.csv"
    path.write_text("question,answer\nHow do I pay?,By card.\nhow do i pay,By cash.\n")
    with pytest.raises(DataError, match="appears in entries"):
        read_kb(path)


def test_conflicting_answers_under_one_id_are_an_error(tmp_path):
    path = tmp_path / "kb.csv"
    path.write_text("id,question,answer\na,Q one,Answer A\na,Q two,Answer B\n")
    with pytest.raises(DataError, match="different answers"):
        read_kb(path)


def test_duplicate_ids_and_repeated_phrasings():
    with pytest.raises(DataError, match="duplicate id 'a'"):
        validate_kb([KBEntry("a", "one", "x"), KBEntry("a", "two", "y")])
    with pytest.warns(DataWarning, match="1 repeated phrasings"):
        (entry,) = validate_kb([KBEntry("a", "Pay?", "x", ("pay", "by card"))])
    assert entry.questions == ("Pay?", "by card")


# ---------------------------------------------------------------- chunking
def test_chunks_keep_source_offsets_and_heading(tmp_path):
    (tmp_path / "manual.md").write_text(
        "# Printer\n\nIntro text.\n\n## Paper jam\n\nOpen tray 2.\n\nRemove the paper.\n"
    )
    (tmp_path / "tickets.jsonl").write_text(
        json.dumps({"title": "Wifi drops", "text": "Restart the router. It fixed it."}) + "\n"
    )
    (tmp_path / "notes.txt").write_text("Para one.\n\nPara two.")
    (tmp_path / "ignored.pdf").write_bytes(b"%PDF")
    docs = read_documents(tmp_path)
    assert sorted(d.source.rsplit("/", 1)[-1] for d in docs) == [
        "manual.md",
        "notes.txt",
        "tickets.jsonl:1",
    ]
    chunks = chunk_documents(docs)
    by_doc = {d.source: d for d in docs}
    for c in chunks:
        assert by_doc[c.source].text[c.start : c.end] == c.text
    jam = next(c for c in chunks if "tray" in c.text)
    assert jam.title == "Paper jam" and jam.text == "Open tray 2.\n\nRemove the paper."
    ticket = next(c for c in chunks if c.source.endswith("tickets.jsonl:1"))
    assert ticket.title == "Wifi drops"


def test_long_paragraphs_are_cut_at_sentences():
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    chunks = chunk_documents([Document(text, "doc")], max_chars=120)
    assert len(chunks) > 5
    assert all(len(c.text) <= 120 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)
    assert all(text[c.start : c.end] == c.text for c in chunks)


def test_documents_errors(tmp_path):
    with pytest.raises(DataError, match=r"no \.md, \.txt or \.jsonl"):
        read_documents(tmp_path)
    (tmp_path / "t.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(DataError, match=r"no 'text' field.*'body'"):
        read_documents(tmp_path)
    assert read_documents(tmp_path, text_field="body")[0].text == "x"
    with pytest.raises(ConfigError, match="max_chars"):
        chunk_documents([], max_chars=10)


# ---------------------------------------------------------------- index
def test_index_groups_rows_by_key_and_round_trips(tmp_path):
    index = VectorIndex(2)
    index.add(["a", "a", "b"], ["a1", "a2", "b1"], _unit([[1, 0], [0.6, 0.8], [0, 1]]))
    (hits,) = index.search(_unit([[0.5, 0.9]]), k=2)
    assert [h.key for h in hits] == ["a", "b"]
    assert hits[0].text == "a2"  # the best row of key "a"
    files = index.save(tmp_path)
    assert files == ["index.safetensors", "index.json"]
    again = VectorIndex.load(tmp_path)
    np.testing.assert_allclose(again.key_scores(_unit([[1, 1]])), index.key_scores(_unit([[1, 1]])))
    assert index.remove({"a"}) == 2 and index.keys == ["b"]


def test_index_refuses_unnormalised_vectors():
    with pytest.raises(ConfigError, match="L2-normalised"):
        VectorIndex(2).add(["a"], ["a"], np.array([[3.0, 4.0]], dtype=np.float32))


# ---------------------------------------------------------------- calibration and loss
def test_threshold_minimises_the_weighted_errors():
    from slmstack.retrieval.calibration import choose_threshold

    conf = np.array([0.1, 0.6, 0.7, 0.9])
    right = np.array([False, True, False, True])
    lenient = choose_threshold(conf, right, wrong_answer_cost=0.5)
    assert lenient.threshold == pytest.approx(0.35)  # answers 0.6, 0.7, 0.9: one wrong
    strict = choose_threshold(conf, right, wrong_answer_cost=3.0)
    assert strict.threshold == pytest.approx(0.8)  # answers only 0.9
    assert strict.wrong_answer_rate == 0.0 and strict.wrong_abstain_rate == 0.25
    bounded = choose_threshold(conf, right, wrong_answer_cost=3.0, max_wrong_abstain=0.0)
    assert bounded.threshold == pytest.approx(0.35)  # may not withhold a right answer
    clean = choose_threshold(
        np.array([0.1, 0.2, 0.8, 0.9]), right[[0, 2, 1, 3]], wrong_answer_cost=1
    )
    assert clean.threshold == pytest.approx(0.5) and clean.answered_accuracy == 1.0


def test_the_match_calibrator_never_lowers_confidence_for_a_closer_match():
    from slmstack.retrieval.calibration import fit_match_calibrator

    # A few held-out queries where the right matches happen to be the less similar ones
    # (an English encoder on a tiny German KB fitted w_sim = -0.05): the fit gave the
    # similarity a negative weight, so a closer match got a lower confidence.
    sim = np.array([0.5, 0.55, 0.6, 0.9, 0.85, 0.8], dtype=np.float32)
    margin = np.array([0.3, 0.35, 0.25, 0.05, 0.02, 0.1], dtype=np.float32)
    right = np.array([True, True, True, False, False, False])
    cal = fit_match_calibrator(sim, margin, right)
    assert cal.w_sim == 0.0 and cal.w_margin > 0
    grid = np.linspace(0.1, 0.9, 9, dtype=np.float32)
    assert np.all(np.diff(cal(grid, np.full_like(grid, 0.1))) >= 0)
    assert np.all(np.diff(cal(np.full_like(grid, 0.5), grid)) > 0)
    with pytest.raises(DataError, match="neither a higher similarity nor a larger margin"):
        fit_match_calibrator(sim, -margin, right)  # both backwards: labels are suspect


def test_mnr_loss_ranks_own_pair_and_masks_paraphrases():
    import torch

    from slmstack.retrieval.contrastive import mnr_loss

    a = torch.eye(3)
    good = mnr_loss(a, a, torch.tensor([0, 1, 2]), scale=20.0)
    bad = mnr_loss(a, a[[1, 2, 0]], torch.tensor([0, 1, 2]), scale=20.0)
    assert good < 1e-6 < bad
    # rows 0 and 1 are paraphrases: b_1 is not a negative for a_0
    confusable = a.clone()
    confusable[1] = a[0]
    masked = mnr_loss(a, confusable, torch.tensor([0, 0, 2]), scale=20.0)
    unmasked = mnr_loss(a, confusable, torch.tensor([0, 1, 2]), scale=20.0)
    assert masked < unmasked


def test_a_comment_in_a_code_block_is_no_heading_in_a_kb_or_a_manual(tmp_path):
    text = ("## How do I restart the service?\n\nRun these commands:\n\n```sh\n"
            "# stop it first\nsystemctl stop app\n```\n\nThen start it again.\n\n"
            "## How do I see the logs?\n\nOpen the log page.\n")  # fmt: skip
    md = tmp_path / "kb.md"
    md.write_text(text)
    kb = read_kb(md)
    assert [e.question for e in kb] == ["How do I restart the service?", "How do I see the logs?"]
    assert kb[0].answer.endswith("Then start it again.") and "systemctl stop app" in kb[0].answer
    chunks = chunk_documents(read_documents(tmp_path))
    assert {c.title for c in chunks} == {"How do I restart the service?", "How do I see the logs?"}


def test_a_manual_saved_on_windows_keeps_its_offsets_and_first_heading(tmp_path):
    (tmp_path / "scanner.md").write_bytes(
        b"\xef\xbb\xbf# Scanner\r\n\r\nPaper jam: open tray 2.\r\n\r\nRemove the paper.\r\n")
    [doc] = read_documents(tmp_path)
    assert doc.text.startswith("# Scanner\r\n")  # the byte-order mark is no part of the text
    chunks = chunk_documents([doc])
    assert {c.title for c in chunks} == {"Scanner"}
    for c in chunks:  # offsets count the file's own \r\n, as an editor shows them
        assert doc.text[c.start : c.end] == c.text
    from slmstack.retrieval.chunking import _pieces

    # a blank \r\n line still parts paragraphs, and no piece keeps a stray \r
    start = doc.text.index("Paper")
    parts = [doc.text[a:b] for a, b in _pieces(doc.text, start, len(doc.text), 200)]
    assert [p.strip() for p in parts if p.strip()] == ["Paper jam: open tray 2.", "Remove the paper."]
    (tmp_path / "scanner.md").write_bytes(b"# Scanner\n\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"scanner.md:3: bytes .* are not UTF-8"):
        read_documents(tmp_path)


def test_an_answer_that_is_not_text_is_refused_not_served_as_a_printed_list(tmp_path):
    jl = tmp_path / "kb.jsonl"
    jl.write_text(json.dumps({"id": "a", "question": "Refund?", "answer": ["x"]}) + "\n")
    with pytest.raises(DataError, match=r"kb.jsonl:1: the answer is a JSON list, not text"):
        read_kb(jl)


def test_pairs_are_held_out_by_query_so_no_held_out_query_is_trained_on():
    from slmstack.errors import DataError
    from slmstack.retrieval.contrastive import held_out_split

    # each query twice (paired with two paraphrases, or listed twice), case and spaces varied
    pairs = [(f"Where is order {i}?", f"order {i} status") for i in range(20)]
    pairs += [(f"where is  ORDER {i}", f"track order {i}") for i in range(20)]
    for seed in range(5):
        val, train = held_out_split(pairs, 0.25, seed)
        assert sorted([*val, *train]) == list(range(40))
        held = {pairs[i][0].lower().replace("  ", " ").rstrip("?") for i in val}
        trained = {pairs[i][0].lower().replace("  ", " ").rstrip("?") for i in train}
        assert not held & trained and len(val) == 10
    with pytest.raises(DataError, match="same query"):
        held_out_split([("q", "a"), ("Q", "b")], 0.5, 0)


@pytest.mark.parametrize(
    "edit",
    [
        lambda meta: meta.pop("texts"),
        lambda meta: meta.pop("dim"),
        lambda meta: meta.update(texts=["only one"]),
        lambda meta: meta.update(keys="a,b"),
        lambda meta: meta.update(dim="2"),
    ],
)
def test_a_hand_edited_index_file_is_an_artifact_error_not_a_crash(tmp_path, edit):
    from slmstack import ArtifactError

    index = VectorIndex(2)
    index.add(["a", "b"], ["first", "second"], _unit([[1, 0], [0, 1]]))
    index.save(tmp_path)
    assert VectorIndex.load(tmp_path, dim=2).keys == ["a", "b"]  # as saved, it loads
    meta = json.loads((tmp_path / "index.json").read_text())
    edit(meta)
    (tmp_path / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="index.json"):
        VectorIndex.load(tmp_path, dim=2)


def test_a_damaged_vectors_file_is_an_artifact_error(tmp_path):
    from slmstack import ArtifactError

    index = VectorIndex(2)
    index.add(["a"], ["first"], _unit([[1, 0]]))
    index.save(tmp_path)
    (tmp_path / "index.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    with pytest.raises(ArtifactError, match="cannot read"):
        VectorIndex.load(tmp_path, dim=2)
