"""``Recommender``: readers, ranking metrics, cold start, persistence, CLI and workflow."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from slmstack import ConfigError, DataError, load
from slmstack.data.interactions import (
    InteractionLog,
    read_interaction_log,
    read_interactions,
    read_items,
)
from slmstack.errors import DataWarning
from slmstack.evaluation.ranking import leave_one_out, rank_metrics, ranks_from_scores

THEMES = {
    "g": [
        "Gorilla wood glue 8 ounce bottle",
        "Titebond wood glue 16 ounce bottle",
        "Epoxy glue syringe clear two part",
        "Super glue gel tube",
    ],
    "s": [
        "Sanding roll 80 grit adhesive backed",
        "Sanding disc 120 grit hook and loop",
        "Sanding sponge fine grit block",
        "Sanding belt 60 grit 3 x 21 inch",
    ],
    "l": [
        "Glass beaker 250 ml borosilicate",
        "Erlenmeyer flask 500 ml borosilicate glass",
        "Graduated cylinder 100 ml borosilicate glass",
        "Test tube rack polypropylene",
    ],
}
# Items nobody bought: only their text can place them.
COLD = {"g-new": "Gorilla wood glue 4 ounce bottle", "l-new": "Glass beaker 600 ml borosilicate"}


def item_texts() -> dict[str, str]:
    items = {f"{t}{i}": text for t, texts in THEMES.items() for i, text in enumerate(texts)}
    return {**items, **COLD}


def histories(n: int = 36, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Each user buys 3-4 items of one theme, in a random order."""
    rng = random.Random(seed)
    out = []
    for u in range(n):
        theme = "gsl"[u % 3]
        items = [f"{theme}{i}" for i in range(4)]
        rng.shuffle(items)
        out.append((f"u{u}", items[: 3 + u % 2]))
    return out


def write_files(folder: Path) -> tuple[Path, Path]:
    inter = folder / "clicks.csv"
    rows = ["user,item,time"]
    for user, items in histories():
        # written newest first: the time column, not file order, must decide
        rows += [f"{user},{item},{t}" for t, item in reversed(list(enumerate(items)))]
    inter.write_text("\n".join(rows) + "\n")
    products = folder / "products.jsonl"
    products.write_text(
        "".join(
            json.dumps({"item": k, "title": v, "category": "Shop"}) + "\n"
            for k, v in item_texts().items()
        )
    )
    return inter, products


def training_log() -> InteractionLog:
    from slmstack.data.interactions import UserHistory

    return InteractionLog(tuple(UserHistory(u, tuple(i)) for u, i in histories()), item_texts())


def make(encoder: Path, **params):
    from slmstack.skills.recommender import Recommender

    defaults = {
        "base": str(encoder),
        "dim": 16,
        "heads": 2,
        "layers": 1,
        "epochs": 25,
        "patience": 25,
        "top_k": 5,
        "dropout": 0.0,
        "batch_size": 8,
        "seed": 0,
    }
    return Recommender(**{**defaults, **params})


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from extract_fixtures import tiny_encoder

    return tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="module")
def fitted(encoder_dir):
    return make(encoder_dir).fit(training_log())


# ---------------------------------------------------------------- readers
def test_csv_log_is_ordered_by_time_and_items_join_text_columns(tmp_path):
    inter, products = write_files(tmp_path)
    log = read_interaction_log(inter, items=products)
    assert dict((h.user, list(h.items)) for h in log) == dict(histories())
    assert log.items["g0"] == "Gorilla wood glue 8 ounce bottle. Shop"
    assert log[0].source == f"{inter}:2"


def test_recbole_files_map_indices_back_to_ids(tmp_path):
    (tmp_path / "Toy.item2index").write_text("A1\t0\nB2\t1\nC3\t2\n")
    (tmp_path / "Toy.text").write_text(
        "item_id:token\ttext:token_seq\nA1\tan apple\nB2\ta banana\nC3\ta cherry\n"
    )
    (tmp_path / "Toy.train.inter").write_text(
        "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t0\t1\n0\t0 1\t2\n1\t2\t0\n"
    )
    log = read_interaction_log(tmp_path / "Toy.train.inter")  # .text found next to it
    assert [(h.user, h.items) for h in log] == [("0", ("A1", "B2", "C3")), ("1", ("C3", "A1"))]
    assert log.items["B2"] == "a banana"


def test_recbole_files_with_a_bom_or_unicode_line_breaks_in_text_are_read(tmp_path):
    """Rows end at a newline only (as RecBole reads them): scraped titles hold U+2028 or
    U+0085, which str.splitlines() cut a row at; a file saved with a BOM keeps its header."""
    (tmp_path / "Toy.text").write_text(
        "item_id:token\ttext:token_seq\r\nA1\tan apple\u2028pie\r\nB2\ta banana\x85split\r\n",
        encoding="utf-8", newline="",
    )  # fmt: skip
    (tmp_path / "Toy.inter").write_text(
        "user_id:token\titem_id:token\n0\tA1\n0\tB2\n", encoding="utf-8-sig"
    )
    log = read_interaction_log(tmp_path / "Toy.inter")
    assert [(h.user, h.items) for h in log] == [("0", ("A1", "B2"))]
    assert log.items == {"A1": "an apple\u2028pie", "B2": "a banana\x85split"}


def test_a_recbole_index_given_twice_is_refused(tmp_path):
    (tmp_path / "Toy.item2index").write_text("A1\t0\nB2\t1\nC3\t1\n")
    (tmp_path / "Toy.inter").write_text("user_id:token\titem_id:token\n0\t0\n0\t1\n")
    with pytest.raises(DataError, match=r"Toy.item2index:3: index 1 is given to 'B2' and to"):
        read_interactions(tmp_path / "Toy.inter")


def test_zero_is_an_id_and_a_log_appended_twice_is_read_once(tmp_path):
    log = tmp_path / "num.jsonl"
    rows = [{"user": 0, "item": 0, "time": 1}, {"user": 0, "item": 7, "time": 2}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows * 2))
    with pytest.warns(DataWarning, match="dropped 2 rows repeating an earlier one"):
        histories = read_interactions(log)
    assert [(h.user, h.items) for h in histories] == [("0", ("0", "7"))]


def test_a_timed_recbole_log_appended_twice_is_read_once(tmp_path):
    """As a timed CSV log: a repeated row would be its own next item, and a held-out
    target the history already holds (never recommended, so always a miss)."""
    rows = "u1\tA\t10\nu1\tB\t20\n"
    (tmp_path / "Toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + rows * 2)
    with pytest.warns(DataWarning, match="dropped 2 rows repeating an earlier one"):
        histories = read_interactions(tmp_path / "Toy.inter")
    assert [(h.user, h.items) for h in histories] == [("u1", ("A", "B"))]


def test_a_log_with_nothing_to_learn_is_refused(encoder_dir, tmp_path):
    from slmstack.data.interactions import InteractionLog, UserHistory

    items = {"a": "an apple", "b": "a banana", "c": "a cherry"}
    singles = InteractionLog(
        tuple(UserHistory(u, (i,)) for u, i in zip("uvw", "abc", strict=True)), items
    )
    with pytest.raises(DataError, match="no user has two or more items"):
        make(encoder_dir, epochs=1).fit(singles)
    pairs = InteractionLog((UserHistory("u", ("a", "b")),), items)
    with pytest.raises(DataError, match="the validation histories give no case"):
        make(encoder_dir, epochs=1).fit(pairs, validation=list(singles))


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("user,product\nu1,a\n", r"clicks.csv:1: missing column 'item'.*--read item_column"),
        ("user,item\nu1,a b\n", r"clicks.csv:2: item id 'a b' contains a space"),
        ("user,item,time\nu1,a,yesterday\n", r"clicks.csv:2: time 'yesterday' is neither"),
        ("user,item\n,a\n", r"clicks.csv:2: empty user id"),
    ],
)
def test_bad_logs_name_the_line_and_the_fix(tmp_path, body, match):
    path = tmp_path / "clicks.csv"
    path.write_text(body)
    with pytest.raises(DataError, match=match):
        read_interactions(path)


def test_a_time_column_under_another_name_is_not_ignored(tmp_path):
    """MovieLens writes ``timestamp`` and sorts rows by user, then item id: read in file
    order, the held-out "last" item would be the largest id, not the newest."""
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,timestamp\n1,10,300\n1,20,100\n1,30,200\n")
    cols = {"user_column": "userId", "item_column": "movieId"}
    with pytest.raises(DataError, match=r"no 'time' column but 'timestamp'.*time_column=timestamp"):
        read_interactions(path, **cols)
    assert read_interactions(path, **cols, time_column="timestamp")[0].items == ("20", "30", "10")
    for file_order in (None, ""):  # asked for by name (CLI: --time-column '')
        in_file_order = read_interactions(path, **cols, time_column=file_order)
        assert in_file_order[0].items == ("10", "20", "30")


def test_a_user_id_may_hold_a_space(tmp_path):
    """Only item ids are written into histories; a user id is a name like any."""
    path = tmp_path / "clicks.csv"
    path.write_text("user,item\nJane Doe,a\nJane Doe,b\n")
    assert [(h.user, h.items) for h in read_interactions(path)] == [("Jane Doe", ("a", "b"))]


def test_items_without_text_and_missing_item_file_are_refused(tmp_path):
    inter, _ = write_files(tmp_path)
    short = tmp_path / "short.csv"
    short.write_text("item,title\ng0,glue\n")
    with pytest.raises(DataError, match=r"have no text in .*short.csv.*Add them"):
        read_interaction_log(inter, items=short)
    with pytest.raises(DataError, match=r"no item text given.*--items FILE"):
        read_interaction_log(inter)
    with pytest.raises(DataError, match=r"short.csv:1: needs an id column 'sku'"):
        read_items(short, id_column="sku")


# ---------------------------------------------------------------- metrics
def test_rank_metrics_and_exclusion():
    m = rank_metrics([1, 2, 0, 11], ks=[10])
    assert m["recall@10"] == pytest.approx(0.5)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3)) / 4)
    scores = np.array([[0.9, 0.5, 0.5, 0.1], [0.9, 0.8, 0.1, 0.0]])
    # a tie ranks the target last among equals; an excluded item moves it up
    assert ranks_from_scores(scores, [1, 1]).tolist() == [3, 2]
    assert ranks_from_scores(scores, [1, 1], exclude=[[0], [1]]).tolist() == [2, 0]
    assert leave_one_out([["a", "b", "c"], ["d"]]) == [(["a", "b"], "c")]


# ---------------------------------------------------------------- the skill
def test_recommends_unseen_items_of_the_same_theme(fitted):
    texts = ["g0 g1", "s3 s2 s0", "l1"]
    preds = fitted.predict(texts)
    for text, p in zip(texts, preds, strict=True):
        listed = [s.label for s in p.scores]
        assert not set(listed) & set(text.split()), "seen items must be excluded"
        assert p.label == listed[0] and p.label[0] == text[0], (text, listed)
        assert p.confidence == pytest.approx(p.scores[0].score)
        assert p.usage.latency_ms > 0
    assert fitted.metrics_["val_recall@10"] > 0.9  # held-out last items are found


@pytest.mark.parametrize("features", ["text+id", "id"])
def test_sequence_model_learns_the_themes(encoder_dir, features):
    rec = make(encoder_dir, model="sequence", features=features).fit(training_log())
    for p, text in zip(
        rec.predict(["g0 g1", "s3 s2", "l1"]), ["g0 g1", "s3 s2", "l1"], strict=True
    ):
        listed = [s.label for s in p.scores]
        assert not set(listed) & set(text.split()), "seen items must be excluded"
        # id vectors alone learn slowly (see bench/RESULTS.md); only text+id is held to themes
        assert features == "id" or listed[0][0] == text[0], (text, listed)
    if features == "id":  # no text: a new item cannot be placed
        with pytest.raises(ConfigError, match="cannot rank items by text"):
            rec.add_items({"x": "a new item"})


def test_cold_item_is_recommended_from_text(encoder_dir):
    rec = make(encoder_dir, features="text").fit(training_log())
    assert rec.id_rows_[rec.index_["g-new"]] == 0  # never interacted with
    for history, mine, other in (("g0 g1 g2", "g-new", "l-new"), ("l0 l1 l2", "l-new", "g-new")):
        listed = [s.label for s in rec.predict([history])[0].scores]
        assert mine in listed and (other not in listed or listed.index(mine) < listed.index(other))


def test_added_item_is_ranked_without_retraining(encoder_dir):
    log = training_log()
    rec = make(encoder_dir, features="text+id").fit(
        InteractionLog(log.histories, {k: v for k, v in log.items.items() if k not in COLD})
    )
    assert "g-new" not in [s.label for s in rec.predict(["g0 g1 g2"])[0].scores]
    rec.add_items({"g-new": COLD["g-new"]})
    assert "g-new" in [s.label for s in rec.predict(["g0 g1 g2"])[0].scores]
    with pytest.raises(DataError, match="already in the catalogue"):
        rec.add_items({"g0": "again"})


def test_added_items_are_checked_as_the_item_file_is(fitted):
    """An id with a space could be recommended but never be given back in a history; an
    item with no text would be ranked from the encoding of nothing."""
    before = fitted.score([["g0"]])
    assert fitted.add_items({}) is fitted  # nothing new today
    np.testing.assert_array_equal(fitted.score([["g0"]]), before)
    with pytest.raises(DataError, match=r"item id 'wood glue' contains a space or comma"):
        fitted.add_items({"wood glue": "Wood glue 2 ounce bottle"})
    with pytest.raises(DataError, match=r"item 'g9' has no text; give it a title"):
        fitted.add_items({"g9": "  "})
    assert "wood glue" not in fitted.index_ and "g9" not in fitted.index_


def test_unknown_items_abstain_or_warn(fitted):
    none, some = fitted.predict(["hello world", "zz9 g0"])
    assert none.abstained == "unknown_items" and none.label is None and none.confidence == 0
    assert "item ids separated by spaces" in none.warnings[0]
    assert some.abstained is None and "['zz9']" in some.warnings[0]


def test_save_load_scores_identically(fitted, tmp_path):
    folder = fitted.save(tmp_path / "rec")
    again = load(folder)
    histories_ = [["g0", "g1"], ["s1"], ["l3", "l2", "l0"]]
    np.testing.assert_array_equal(fitted.score(histories_), again.score(histories_))
    assert again.items_ == fitted.items_ and again.id_rows_ == fitted.id_rows_


def test_bad_parameters_are_refused(encoder_dir):
    with pytest.raises(ConfigError, match=r"dim \(10\) must be a multiple of heads \(4\)"):
        make(encoder_dir, dim=10, heads=4).fit(training_log())
    with pytest.raises(ConfigError, match="takes an InteractionLog"):
        make(encoder_dir).fit([("u", ["g0"])])  # type: ignore[arg-type]


# ---------------------------------------------------------------- CLI and workflow
def test_cli_train_predict_eval(encoder_dir, tmp_path):
    from slmstack.cli.app import app

    inter, products = write_files(tmp_path)
    out = tmp_path / "rec"
    runner = CliRunner()
    args = [
        "train",
        "recommend",
        str(inter),
        "--items",
        str(products),
        "--out",
        str(out),
        "--base",
        str(encoder_dir),
        "--set",
        "dim=16",
        "--set",
        "epochs=8",
        "--set",
        "layers=1",
        "--set",
        "dropout=0",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["items"] == len(item_texts()) and "val_ndcg@10" in summary
    result = runner.invoke(app, ["predict", str(out), "g0 g1", "--json"])
    assert result.exit_code == 0, result.output
    pred = json.loads(result.stdout)[0]
    # every unseen item is listed: 14 in the catalogue, 2 seen
    assert pred["label"] not in ("g0", "g1") and len(pred["scores"]) == 12
    result = runner.invoke(app, ["eval", str(out), str(inter), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 36 and 0 < report["recall@10"] <= 1 and "ndcg@20" not in report
    bad = runner.invoke(app, ["train", "recommend", str(inter), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--items" in bad.output


def test_cli_eval_reads_a_log_with_other_column_names(fitted, tmp_path):
    """The readers' errors say ``--read user_column=NAME``: ``slmstack eval`` takes it."""
    from slmstack.cli.app import app

    folder = fitted.save(tmp_path / "rec")
    log = tmp_path / "ratings.csv"
    rows = [f"{u},{i},{t}" for u, items in histories() for t, i in enumerate(items)]
    log.write_text("userId,movieId,timestamp\n" + "\n".join(rows) + "\n")
    runner = CliRunner()
    bad = runner.invoke(app, ["eval", str(folder), str(log), "--json"])
    assert bad.exit_code == 2 and "--read user_column=NAME" in bad.output
    reads = ["user_column=userId", "item_column=movieId", "time_column=timestamp"]
    args = ["eval", str(folder), str(log), "--json", *(f"--read={r}" for r in reads)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 36
    typo = runner.invoke(app, ["eval", str(folder), str(log), "--read", "user=userId"])
    assert typo.exit_code == 2 and "reader has no such option" in typo.output


def test_workflow_escalates_when_the_history_is_unknown(fitted, tmp_path):
    from slmstack.workflows import load_workflow

    folder = fitted.save(tmp_path / "rec")
    wf_file = tmp_path / "wf.yaml"
    wf_file.write_text(
        textwrap.dedent(f"""\
        skills:
          recommend: {{path: {folder}}}
        steps:
          - cascade:
              threshold: 0.0
              tiers: [recommend, {{template: "ask a person about {{input}}"}}]
        """)
    )
    wf = load_workflow(wf_file)
    assert wf.run("g0 g1").answer[0] == "g"
    assert wf.run("nothing known").answer == "ask a person about nothing known"


def test_eval_on_items_the_skill_does_not_know_says_so(fitted, tmp_path):
    log = tmp_path / "t.csv"
    log.write_text("user,item,time\nu1,zzz1,1\nu1,zzz2,2\nu2,yy,1\nu2,yy2,2\n")
    with pytest.raises(DataError, match="none of the log's items is in the skill's catalogue"):
        fitted.evaluate(log)
