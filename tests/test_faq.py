import json

import numpy as np
import pytest

from slmstack import ArtifactError, ConfigError, DataError, DataWarning, FAQAnswerer, KBEntry, load

KB = [
    KBEntry(
        "password",
        "How do I reset my password?",
        "Click 'Forgot password' on the login page and follow the e-mail link.",
        ("I forgot my password", "how to change a lost password", "password reset link"),
    ),
    KBEntry(
        "refund",
        "How do I get a refund?",
        "Open Orders, choose the order and press 'Request refund'.",
        ("I want my money back", "can I return an item for a refund", "refund my order"),
    ),
    KBEntry(
        "shipping",
        "How long does shipping take?",
        "Parcels arrive in 3 to 5 business days.",
        ("when will my parcel arrive", "delivery time", "how many days for delivery"),
    ),
    KBEntry(
        "hours",
        "When is customer support open?",
        "Support is open 9am to 5pm, Monday to Friday.",
        ("what are your opening hours", "support hours", "is the help desk open on sunday"),
    ),
]
IN_SCOPE = [
    "i can't remember my password",
    "give me my money back",
    "how many days until my parcel is delivered",
]
OUT_OF_SCOPE = ["what is the capital of france", "play some jazz music"]
QUERIES = IN_SCOPE + OUT_OF_SCOPE
CALIBRATION = [
    ("forgot my login password", "password"),
    ("need to reset my password", "password"),
    ("refund please", "refund"),
    ("return this and refund me", "refund"),
    ("how fast is delivery", "shipping"),
    ("parcel delivery days", "shipping"),
    ("when can I call support", "hours"),
    ("are you open on saturday", "hours"),
    ("who won the football match", None),
    ("tell me a joke", None),
    ("what's the weather tomorrow", None),
    ("book a table for two", None),
]


@pytest.fixture(scope="module")
def faq():
    return FAQAnswerer(seed=0).fit(KB, calibration=CALIBRATION)


def test_leave_one_out_calibration_and_a_referenced_encoder(tmp_path):
    skill = FAQAnswerer(seed=0).fit(KB)
    skill.save(tmp_path / "skill")
    assert skill.metrics_["calibration_source"].startswith("leave-one-out")
    assert not (tmp_path / "skill" / "encoder").exists(), "pretrained encoder is referenced"


def test_answers_come_verbatim_from_the_kb_with_the_matched_entry(faq):
    preds = faq.predict(IN_SCOPE)
    assert [p.label for p in preds] == ["password", "refund", "shipping"]
    answers = {e.id: e.answer for e in KB}
    for p in preds:
        assert p.abstained is None
        assert p.text == answers[p.label]
        assert p.data["entry"]["id"] == p.label
        assert p.data["matched_question"] in dict((e.id, e.questions) for e in KB)[p.label]
        assert p.confidence >= faq.threshold_
        assert p.scores[0].label == p.label and p.scores[0].score >= p.scores[1].score


def test_abstains_on_out_of_scope_and_shows_the_nearest_entry(faq):
    for p in faq.predict(OUT_OF_SCOPE):
        assert p.abstained == "no_match"
        assert p.label is None and p.text is None
        assert p.confidence < faq.threshold_
        assert p.data["nearest"]["entry"]["id"] in {e.id for e in KB}


def test_threshold_is_chosen_on_held_out_queries_and_can_be_fixed():
    auto = FAQAnswerer().fit(KB, calibration=CALIBRATION)
    assert auto.metrics_["threshold_chosen_on_held_out"]
    assert auto.metrics_["calibration_queries"] == len(CALIBRATION)
    assert 0.0 < auto.threshold_ < 1.0
    strict = FAQAnswerer(threshold=1.0).fit(KB, calibration=CALIBRATION)
    assert all(p.abstained == "no_match" for p in strict.predict(IN_SCOPE))


def test_confidence_is_monotone_in_similarity(faq):
    sims = np.linspace(0.1, 0.9, 9, dtype=np.float32)
    conf = faq.calibrator_(sims, np.full_like(sims, 0.1))
    assert np.all(np.diff(conf) > 0)


def test_kb_update_without_retraining(faq, tmp_path):
    skill = FAQAnswerer(seed=0).fit(KB, calibration=CALIBRATION)
    calibrator, threshold = skill.calibrator_, skill.threshold_
    query = ["can I pay with paypal"]
    assert skill.predict(query)[0].abstained == "no_match"
    skill.add(
        [
            KBEntry(
                "paypal", "Do you accept PayPal?", "Yes, PayPal is accepted.", ("pay with paypal",)
            )
        ]
    )
    p = skill.predict(query)[0]
    assert p.label == "paypal" and p.text == "Yes, PayPal is accepted."
    skill.replace(
        [KBEntry("paypal", "Do you accept PayPal?", "No, cards only.", ("pay by paypal",))]
    )
    assert skill.predict(query)[0].text == "No, cards only."
    skill.remove(["paypal"])
    assert skill.predict(query)[0].label != "paypal"
    assert skill.calibrator_ is calibrator and skill.threshold_ == threshold  # no refit
    skill.add([KBEntry("gift", "Do you sell gift cards?", "Yes, from 10 to 200 euros.")])
    reloaded = load(skill.save(tmp_path / "updated"))
    assert reloaded.predict(["do you have gift cards"])[0].label == "gift"
    config = json.loads((tmp_path / "updated" / "config.json").read_text())
    assert config["kb"]["entries"] == len(KB) + 1


def test_a_failed_update_changes_nothing_and_a_running_prediction_keeps_its_index(monkeypatch):
    faq = FAQAnswerer(seed=0).fit(KB, calibration=CALIBRATION)
    before = {e.id: e.answer for e in faq.kb}
    index = faq.index_
    n_rows = len(index)

    def broken(texts, **kw):
        raise RuntimeError("encoder went away")

    monkeypatch.setattr(faq.encoder_, "encode", broken)
    changed = KBEntry(KB[0].id, "a new question", "a new answer")
    with pytest.raises(RuntimeError, match="went away"):
        faq.replace([changed])
    monkeypatch.undo()
    assert {e.id: e.answer for e in faq.kb} == before and faq.index_ is index
    # an update builds a new index: the one a prediction already holds is not changed
    faq.replace([changed])
    assert faq.index_ is not index and len(index) == n_rows
    assert KB[0].id in index.keys and faq.kb[0].answer == "a new answer"


def test_kb_update_errors(faq):
    with pytest.raises(DataError, match="already exist; use replace"):
        faq.add([KB[0]])
    with pytest.raises(DataError, match="do not exist; use add"):
        faq.replace([KBEntry("nope", "new question", "x")])
    with pytest.raises(DataError, match="no entries with ids \\['nope'\\]"):
        faq.remove(["nope"])
    with pytest.raises(DataError, match="appears in entries"):
        faq.add([KBEntry("dup", "How do I get a refund?", "Another answer.")])


def test_bad_input():
    with pytest.raises(DataError, match="knowledge base is empty"):
        FAQAnswerer().fit([])
    with pytest.raises(DataError, match="cannot calibrate from this knowledge base alone") as no:
        FAQAnswerer().fit([KBEntry(e.id, e.question, e.answer) for e in KB])
    assert f"the ids here are {KB[0].id!r}" in str(no.value)  # what a --calibration file uses
    with pytest.raises(DataError, match="expects entry 'missing'"):
        FAQAnswerer().fit(KB, calibration=[("hello", "missing")])
    with pytest.raises(DataError, match="at least 2 right and 2 wrong"):
        FAQAnswerer().fit(KB, calibration=[("refund please", "refund"), ("tell a joke", None)])
    with pytest.raises(ConfigError, match="'threshold' parameter of FAQAnswerer"):
        FAQAnswerer(threshold=1.5).fit(KB)
    with pytest.raises(ConfigError, match="read_kb"):
        FAQAnswerer().fit("faq.csv")  # type: ignore[arg-type]


def test_finetuning_on_paraphrase_pairs_saves_the_encoder(tmp_path):
    pairs = [(alt, e.question) for e in KB for alt in e.alternates]
    skill = FAQAnswerer(epochs=1, train_batch_size=4, seed=0).fit(
        KB, pairs=pairs, calibration=CALIBRATION
    )
    assert skill.finetuned_ and skill.history_[0]["epoch"] == 0
    folder = skill.save(tmp_path / "ft")
    assert (folder / "encoder" / "model.safetensors").is_file()
    reloaded = load(folder)
    a = [p.confidence for p in skill.predict(QUERIES)]
    b = [p.confidence for p in reloaded.predict(QUERIES)]
    np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(DataError, match="at least 4 paraphrase pairs"):
        FAQAnswerer().fit(KB, pairs=pairs[:2], calibration=CALIBRATION)


def test_tampered_vectors_are_detected(faq, tmp_path):
    folder = faq.save(tmp_path / "faq")
    (folder / "index.safetensors").write_bytes(b"x" + (folder / "index.safetensors").read_bytes())
    with pytest.raises(ArtifactError, match="does not match the sha256"):
        load(folder)


def test_empty_texts_abstain_and_clone_gives_an_unfitted_copy(faq):
    from sklearn.base import clone

    preds = faq.predict(["", "   ", IN_SCOPE[0]])
    assert [p.abstained for p in preds[:2]] == ["empty_input", "empty_input"]
    assert all(p.label is None and p.text is None for p in preds[:2])
    assert preds[2].label == "password"
    copy = clone(faq)
    assert copy.get_params() == faq.get_params()
    assert not copy.is_fitted and not hasattr(copy, "index_")


def test_saved_config_records_provenance_and_exact_duplicates_are_dropped(tmp_path):
    with pytest.warns(DataWarning, match="dropped 1 exact duplicate"):
        skill = FAQAnswerer(seed=0).fit([*KB, KB[0]], calibration=CALIBRATION)
    assert skill.provenance_.duplicates_dropped == 1 and skill.provenance_.rows == len(KB)
    folder = skill.save(tmp_path / "faq")
    config = json.loads((folder / "config.json").read_text())
    assert config["provenance"]["base"]["ref"] == "minilm"
    assert config["provenance"]["metrics"]["calibration_queries"] == len(CALIBRATION)
    del config["calibrator"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="no 'calibrator' entry"):
        load(folder)


def test_precision_auto_is_accepted_saved_and_keeps_the_answers(faq, tmp_path):
    skill = FAQAnswerer(seed=0, precision="auto").fit(KB, calibration=CALIBRATION)
    assert [p.label for p in skill.predict(IN_SCOPE)] == [p.label for p in faq.predict(IN_SCOPE)]
    skill.save(tmp_path / "auto")
    saved = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert saved["params"]["precision"] == "auto"
    with pytest.raises(ConfigError, match="'precision' parameter of FAQAnswerer"):
        FAQAnswerer(precision="fp16").fit(KB)  # type: ignore[arg-type]


def test_confidence_does_not_depend_on_how_many_scores_are_listed(faq):
    # The margin is over the runner-up entry, as in calibration; with top_k=1 it was
    # taken over 0.0 instead, which raised every confidence and hid near-ties.
    import copy

    one = copy.copy(faq)
    one.top_k = 1
    wide, narrow = faq.predict(QUERIES), one.predict(QUERIES)
    assert [len(p.scores) for p in narrow] == [1] * len(QUERIES)
    assert [p.confidence for p in narrow] == pytest.approx([p.confidence for p in wide])
    assert [p.abstained for p in narrow] == [p.abstained for p in wide]


# A German knowledge base as small as a regional desk's: the English encoder reads German
# poorly, and its leave-one-out set (30 queries) chose 0.36, so near-misses were answered.
KB_DE = [
    KBEntry("versand", "Wie lange dauert die Lieferung?", "Die Lieferung dauert 3 bis 5 Werktage.",
            ("Wann kommt mein Paket an?", "Wie schnell liefern Sie?")),
    KBEntry("rueckgabe", "Wie kann ich etwas zurückgeben?", "Rücksendungen sind 30 Tage frei.",
            ("Kann ich die Ware zurückschicken?", "Wie funktioniert die Rücksendung?")),
    KBEntry("garantie", "Wie lange gilt die Garantie?", "Alle Geräte haben zwei Jahre Garantie.",
            ("Gibt es eine Garantie?", "Was ist von der Garantie abgedeckt?")),
    KBEntry("bezahlung", "Wie kann ich bezahlen?", "Wir nehmen Kreditkarte und PayPal.",
            ("Kann ich mit PayPal zahlen?", "Welche Zahlungsmittel gibt es?")),
    KBEntry("zeiten", "Wann ist der Kundendienst erreichbar?", "Montag bis Freitag, 9 bis 17 Uhr.",
            ("Wie sind Ihre Öffnungszeiten?", "Wann kann ich anrufen?")),
]  # fmt: skip


def test_a_tiny_kb_answers_only_when_right_is_likelier_than_wrong(tmp_path):
    skill = FAQAnswerer(seed=0).fit(KB_DE)
    m = skill.metrics_
    assert m["calibration_queries"] < 100
    assert skill.threshold_ >= 0.5  # c / (1 + c) with wrong_answer_cost c = 1
    assert m["threshold_rule"].startswith("floor c/(1 + c) with c = wrong_answer_cost = 0.500")
    assert "fewer than 100" in m["threshold_rule"]
    near_miss, paraphrase = skill.predict(
        ["Wie lange dauert eine Reparatur?", "Wie lange dauert der Versand?"]
    )
    assert near_miss.abstained == "no_match"  # was answered with the delivery time
    assert paraphrase.label == "versand"
    card = (skill.save(tmp_path / "de") / "model_card.md").read_text(encoding="utf-8")
    assert "floor c/(1 + c)" in card
    costly = FAQAnswerer(seed=0, wrong_answer_cost=3.0).fit(KB_DE)
    assert costly.threshold_ >= 0.75
    fixed = FAQAnswerer(seed=0, threshold=0.2).fit(KB_DE)  # a given threshold is kept
    assert fixed.threshold_ == 0.2 and fixed.metrics_["threshold_rule"].startswith("fixed")


def test_the_floor_only_raises_and_only_on_few_held_out_queries():
    from slmstack.retrieval.calibration import ThresholdChoice
    from slmstack.skills._faq_calibration import MIN_HELD_OUT, threshold_rule

    assert MIN_HELD_OUT == 100
    low = ThresholdChoice(0.3, 1.0, 0.5, 0.0, 0.1)
    assert threshold_rule(low, MIN_HELD_OUT - 1, wrong_answer_cost=1.0)[0] == 0.5
    assert threshold_rule(low, MIN_HELD_OUT - 1, wrong_answer_cost=4.0)[0] == 0.8
    assert threshold_rule(low, MIN_HELD_OUT - 1, wrong_answer_cost=0.25)[0] == 0.3  # floor 0.2
    kept, rule = threshold_rule(low, MIN_HELD_OUT, wrong_answer_cost=1.0)
    assert kept == 0.3 and rule.startswith("minimum of")  # a large set keeps its minimum
    high = ThresholdChoice(0.7, 1.0, 0.5, 0.0, 0.1)
    assert threshold_rule(high, 10, wrong_answer_cost=1.0)[0] == 0.7
