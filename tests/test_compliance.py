"""ComplianceChecker on tiny hand-written NDAs: verdicts, flags, evidence offsets, windows."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from extract_fixtures import tiny_encoder
from slmstack import ConfigError, DataError, NotFittedError
from slmstack.compliance import ContractDoc, load_pack, parse_pack, read_contractnli, segment
from slmstack.compliance._nli import Hypothesis, Pair, head_features, shift
from slmstack.compliance._training import BIASES, choose_bias
from slmstack.compliance.checker import ComplianceChecker
from slmstack.compliance.data import Annotation, windows
from slmstack.compliance.metrics import Judged, average_precision, nli_report, threshold_for

USE = "Receiving Party shall not use any Confidential Information for any purpose other than the Purpose."
SHARE = "Receiving Party may share Confidential Information with its employees."
USE_YES = "The Recipient shall use the Confidential Information solely for the Purpose and for nothing else."
USE_NO = "The Recipient may use the Confidential Information for any purpose whatsoever, without limitation."
SHARE_YES = (
    "The Recipient may disclose Confidential Information to its employees who need to know it."
)
SHARE_NO = (
    "The Recipient shall not disclose Confidential Information to any employee or other person."
)
FILLER = [
    "This Agreement is made between Alpha Ltd and Beta GmbH.",
    "Each party is an independent contractor.",
    "Notices shall be sent by registered mail to the addresses above.",
    "This Agreement is governed by the laws of England and Wales.",
    "The parties signed this Agreement on the date written above.",
]

PACK = f"""\
name: tiny-nda
rules:
  - id: limited-use
    title: Limited use
    hypothesis: "{USE}"
    require: entailed
    severity: high
    source: "ContractNLI nda-4"
  - id: employees
    hypothesis: "{SHARE}"
    require: not_contradicted
    source: "ContractNLI nda-5"
"""


def nda(i: int, use: str, share: str) -> ContractDoc:
    """A small NDA; ``use``/``share`` are 'E', 'C' or 'N' (entailed, contradicted, absent)."""
    parts = ["NON-DISCLOSURE AGREEMENT", FILLER[i % 5]]
    labels: dict[str, tuple[str, list[int]]] = {}
    for key, verdict, yes, no in (
        ("use", use, USE_YES, USE_NO),
        ("share", share, SHARE_YES, SHARE_NO),
    ):
        hyp = USE if key == "use" else SHARE
        if verdict == "N":
            labels[hyp] = ("not_mentioned", [])
            continue
        labels[hyp] = ("entailed" if verdict == "E" else "contradicted", [len(parts)])
        parts.append(yes if verdict == "E" else no)
    parts += [FILLER[(i + 2) % 5], FILLER[(i + 3) % 5]]
    text = "\n".join(parts)
    spans = tuple(segment(text))
    assert len(spans) == len(parts)
    return ContractDoc(
        f"doc{i}", text, spans, {h: Annotation(v, tuple(ev)) for h, (v, ev) in labels.items()}
    )  # type: ignore[arg-type]


PATTERNS = ["EE", "CN", "NC", "EN", "CE", "NE", "EC", "CC", "NN", "EE", "CN", "NE", "EC", "NC",
            "CE", "EN", "NN", "CC"]  # fmt: skip


def training() -> list[ContractDoc]:
    return [nda(i, p[0], p[1]) for i, p in enumerate(PATTERNS)]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="module")
def pack_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pack") / "tiny.yaml"
    path.write_text(PACK)
    return path


def make(encoder: Path, pack: str | Path = "nda", **params: object) -> ComplianceChecker:
    return ComplianceChecker(base=str(encoder), pack=str(pack), val_fraction=0.25, **params)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def checker(encoder: Path, pack_file: Path) -> ComplianceChecker:
    return make(encoder, pack_file).fit(training())


def test_segment_offsets_point_into_the_text():
    text = "1. Definitions.  The Recipient shall keep it secret. It may copy it;\n\n(a) one item.  "
    bounds = segment(text)
    assert [text[a:b] for a, b in bounds] == [
        "1. Definitions.", "The Recipient shall keep it secret.", "It may copy it;", "(a) one item."]  # fmt: skip


def test_segment_cuts_sentences_that_end_or_start_with_a_non_ascii_letter():
    # Only A-Z counted: "signé." never ended a sentence and "Élodie" never started one,
    # so French or German evidence ran on into the next sentence.
    text = "Le contrat est signé. Élodie Dupont le garde secret.\r\nDie Frist gilt. Über Dritte: nein."
    assert [text[a:b] for a, b in segment(text)] == [
        "Le contrat est signé.", "Élodie Dupont le garde secret.", "Die Frist gilt.",
        "Über Dritte: nein."]  # fmt: skip
    text = "Pay in 30 days. e.g. cash. Done."  # a lower-case word after a stop starts none
    assert [text[a:b] for a, b in segment(text)] == ["Pay in 30 days. e.g. cash.", "Done."]


def test_windows_cover_a_long_segment_without_truncating():
    text = "word " * 50 + "end."
    bounds = [(0, len(text))]

    def offsets(piece: str) -> list[tuple[int, int]]:
        import re

        return [(m.start(), m.end()) for m in re.finditer(r"\S+", piece)]

    wins = windows(text, bounds, offsets, 8)
    assert len(wins) > 1 and all(k == 0 for _, _, k in wins)
    assert wins[0][0] == 0 and wins[-1][1] == len(text)
    for (_, end, _), (start, _, _) in itertools.pairwise(wins):
        assert start < end  # windows overlap: nothing between them is skipped


def test_verdicts_flags_and_evidence_offsets(checker: ComplianceChecker):
    docs = [nda(100, "E", "N"), nda(101, "C", "E"), nda(102, "N", "C")]
    preds = checker.predict([d.text for d in docs])
    got = [{r["id"]: r["verdict"] for r in p.data["rules"]} for p in preds]
    assert got == [
        {"limited-use": "entailed", "employees": "not_mentioned"},
        {"limited-use": "contradicted", "employees": "entailed"},
        {"limited-use": "not_mentioned", "employees": "contradicted"},
    ]
    flags = [{r["id"]: r["flag"] for r in p.data["rules"]} for p in preds]
    for _f, p in zip(flags, preds, strict=False):
        assert p.label in ("ok", "missing", "violated", "needs_review")
        for rule in p.data["rules"]:
            assert rule["flag"] == "needs_review" or rule["flag"] == {
                ("entailed", "entailed"): "ok", ("entailed", "contradicted"): "violated",
                ("entailed", "not_mentioned"): "missing", ("not_contradicted", "contradicted"): "violated",
            }.get((rule["require"], rule["verdict"]), "ok")  # fmt: skip
    assert flags[1]["limited-use"] in ("violated", "needs_review")
    for doc, p in zip(docs, preds, strict=False):
        assert p.spans, "entailed or contradicted rules carry evidence"
        for s in p.spans:
            assert doc.text[s.start : s.end] == s.text
        for rule in p.data["rules"]:
            for e in rule["evidence"]:
                assert doc.text[e["start"] : e["end"]] == e["text"]
    # the evidence of the contradicted rule is the contradicting sentence
    use = next(r for r in preds[1].data["rules"] if r["id"] == "limited-use")
    assert use["evidence"][0]["text"] == USE_NO


def test_pack_override_and_field_rules_not_checked(checker: ComplianceChecker):
    p = checker.predict([nda(5, "E", "E").text], pack="payment-terms")[0]
    assert p.data["rules"] == [] and p.data["not_checked"] == [
        "due-within-30-days", "vat-shown", "totals-consistent"]  # fmt: skip
    assert p.label == "not_checked" and "nothing was checked" in p.warnings[0]  # not "ok"
    gdpr = checker.predict([nda(5, "E", "E").text], pack="gdpr-art28")[0]
    assert len(gdpr.data["rules"]) == len(load_pack("gdpr-art28").rules)
    assert "never saw in training" in gdpr.warnings[0]  # an NDA checker on GDPR rules


def test_long_document_is_read_in_windows(checker: ComplianceChecker):
    long = (
        "The Recipient agrees that " + ", and ".join(f"clause {i} applies" for i in range(60)) + "."
    )
    text = nda(7, "C", "N").text + "\n" + long
    p = checker.predict([text])[0]
    assert p.data["windows"] > len(segment(text))  # the long sentence became several windows
    assert not p.warnings


def test_review_threshold_forces_needs_review(encoder: Path, pack_file: Path, checker):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        strict = make(encoder, pack_file, review_threshold=1.0).fit(training())
    # the user set it: no warning that no threshold could be chosen
    assert not [w for w in caught if "no review threshold reaches" in str(w.message)]
    p = strict.predict([nda(3, "E", "E").text])[0]
    assert p.label == "needs_review"
    assert {r["flag"] for r in p.data["rules"]} == {"needs_review"}
    assert 0.0 <= checker.review_threshold_ <= 1.0


@pytest.mark.parametrize("value", [60, -0.1])
def test_a_review_threshold_outside_0_1_is_refused(value):
    """60 (a percent) sent every verdict to review; a negative one sent none."""
    with pytest.raises(ConfigError, match="'review_threshold' parameter .* None or a float in"):
        ComplianceChecker.check_params({"review_threshold": value})


def test_fit_refuses_too_few_documents(encoder: Path):
    with pytest.raises(DataError, match="too few"):
        make(encoder).fit(training()[:3])
    with pytest.raises(NotFittedError):
        make(encoder).predict(["text"])


def test_unknown_pack_is_a_clear_error(checker: ComplianceChecker):
    with pytest.raises(ConfigError, match="does not exist.*shipped pack"):
        checker.predict(["some text"], pack="no-such-pack.yaml")


def test_read_contractnli(tmp_path: Path):
    doc = {"id": 1, "text": "A b. C d.", "spans": [[0, 4], [5, 9]], "annotation_sets": [
        {"annotations": {"nda-1": {"choice": "Contradiction", "spans": [1]}}}]}  # fmt: skip
    path = tmp_path / "cnli.json"
    path.write_text(json.dumps({"documents": [doc], "labels": {"nda-1": {"hypothesis": "H."}}}))
    [got] = read_contractnli(path)
    assert got.labels["H."] == Annotation("contradicted", (1,))
    path.write_text(json.dumps({"docs": []}))
    with pytest.raises(DataError, match="ContractNLI"):
        read_contractnli(path)
    doc["annotation_sets"][0]["annotations"]["nda-1"]["spans"] = [99]
    path.write_text(json.dumps({"documents": [doc], "labels": {"nda-1": {"hypothesis": "H."}}}))
    with pytest.raises(DataError, match=r"names span\(s\) \[99\], but the document has 2 spans"):
        read_contractnli(path)


def test_metrics():
    assert average_precision([0.9, 0.1, 0.8], frozenset({0, 2})) == 1.0
    assert average_precision([0.1, 0.9, 0.8], frozenset({0})) == pytest.approx(1 / 3)
    t, share = threshold_for(np.linspace(0.3, 1, 50).tolist(), [i > 20 for i in range(50)], 0.95)
    assert 0.5 < t < 1.0 and 0 < share < 1


def test_parse_pack_roundtrip():
    pack = parse_pack(PACK, "inline")
    assert [r.id for r in pack.nli_rules] == ["limited-use", "employees"]


def test_f1_of_a_verdict_a_hypothesis_never_has_is_left_out():
    items = [
        Judged("a", "contradicted", "contradicted"),
        Judged("a", "entailed", "entailed"),
        Judged("b", "entailed", "entailed"),
        Judged("b", "not_mentioned", "contradicted"),  # b is never contradicted
    ]
    r = nli_report(items)
    assert r["f1_contradicted"] == 1.0  # b's F1 is undefined, not 0 (as the paper's code)
    assert r["accuracy"] == 0.75  # b's false alarm still costs accuracy ...
    assert r["micro_f1_contradicted"] == pytest.approx(2 / 3)  # ... and micro F1
    assert r["f1_entailed"] == 1.0
    assert "f1_contradicted" not in nli_report([Judged("a", "entailed", "entailed")])


def test_shift_moves_probability_to_contradiction_and_keeps_rows_normalised():
    probs = np.array([[0.6, 0.1, 0.3], [0.2, 0.2, 0.6]])
    assert np.allclose(shift(probs, 0.0), probs)
    up = shift(probs, 1.0)
    assert np.allclose(up.sum(axis=1), 1.0)
    assert (up[:, 1] > probs[:, 1]).all() and (up[:, [0, 2]] < probs[:, [0, 2]]).all()
    # the other two verdicts keep their ratio: only the contradiction prior moved
    assert np.allclose(up[:, 0] / up[:, 2], probs[:, 0] / probs[:, 2])


def _rare_contradiction(seed: int = 0) -> tuple[np.ndarray, list[Pair]]:
    """One feature: entailed near 0, not mentioned near 4, rare contradictions near 1.5."""
    rng = np.random.default_rng(seed)
    verdicts = [0] * 60 + [2] * 60 + [1] * 15
    centre = {0: 0.0, 2: 4.0, 1: 1.5}
    x = np.array([[centre[v] + rng.normal(0, 0.6 if v == 1 else 1.0)] for v in verdicts])
    order = rng.permutation(len(verdicts))
    pairs = [Pair(int(i) % 30, "h", verdicts[i], frozenset()) for i in order]
    return x[order].astype(np.float32), pairs


def test_choose_bias_raises_a_rare_contradiction_and_leaves_a_balanced_head_near_zero():
    x, pairs = _rare_contradiction()
    plain = choose_bias(x, pairs, c=1.0, balanced=False, folds=3, seed=0)
    assert plain > 0  # an unweighted head under-predicts the rare verdict; the rule corrects it
    assert plain in BIASES
    balanced = choose_bias(x, pairs, c=1.0, balanced=True, folds=3, seed=0)
    assert balanced < plain


def test_per_hypothesis_head_features_fall_back_to_shared_ones_for_a_new_hypothesis():
    vec = np.ones(4, dtype=np.float32)
    known = ("h1", "h2")
    p_ev, p_c = np.array([0.9, 0.2, 0.1]), np.array([0.8, 0.1, 0.5])
    seen = head_features(p_ev, p_c, Hypothesis(vec, None, None, "h2"), known)
    new = head_features(p_ev, p_c, Hypothesis(vec, None, None, "other"), known)
    shared = head_features(p_ev, p_c, Hypothesis(vec, None, None, "h2"))
    n = len(shared)
    assert len(seen) == len(new) == n + 2 + 2 * (n - 4)  # one-hot, facts per hypothesis
    assert np.array_equal(seen[:n], shared) and np.array_equal(new[:n], shared)
    assert seen[n : n + 2].tolist() == [0.0, 1.0] and not new[n:].any()
    assert np.array_equal(seen[n + 2 + (n - 4) :], shared[: n - 4])  # h2's block holds the facts


def test_saved_checker_keeps_its_head_and_bias(checker: ComplianceChecker, tmp_path: Path):
    checker.save(tmp_path / "c")
    back = ComplianceChecker.load(tmp_path / "c")
    assert back.models_.head.hypotheses == checker.models_.head.hypotheses == (SHARE, USE)
    assert back.models_.head.contradiction_bias == checker.models_.head.contradiction_bias
    text = nda(9, "C", "E").text

    def seen(c: ComplianceChecker) -> list[tuple[str, str, str, float]]:
        rules = c.predict([text])[0].data["rules"]
        return [(r["id"], r["verdict"], r["flag"], round(r["confidence"], 4)) for r in rules]

    assert seen(back) == seen(checker)


def test_a_hypothesis_never_contradicted_in_training_saves_and_loads(
    encoder: Path, pack_file: Path, tmp_path: Path
):
    never = [nda(i, p[0], p[1].replace("C", "E")) for i, p in enumerate(PATTERNS)]
    fitted = make(encoder, pack_file).fit(never)
    fitted.save(tmp_path / "c")
    back = ComplianceChecker.load(tmp_path / "c")  # an empty memory of contradictions
    text = nda(3, "E", "E").text

    def seen(c: ComplianceChecker) -> list[tuple[str, str, str, float]]:
        rules = c.predict([text])[0].data["rules"]
        return [(r["id"], r["verdict"], r["flag"], round(r["confidence"], 4)) for r in rules]

    assert seen(back) == seen(fitted)


@pytest.mark.parametrize(
    ("labels", "choice", "message"),
    [
        ({"nda-1": {"hypotesis": "H."}}, "Entailment", r"labels\['nda-1'\] has no 'hypothesis'"),
        (["H."], "Entailment", r"`labels` must map each hypothesis key to"),
        ({"nda-1": {"hypothesis": "H."}}, "Entailed", r"'Entailed'.*one of Entailment, "
         r"Contradiction, NotMentioned"),
        ({"nda-2": {"hypothesis": "H."}}, "Entailment", r"'nda-1', which `labels` does not "
         r"define \(it has 'nda-2'\)"),
    ],
)
def test_a_malformed_contractnli_file_names_the_fault(tmp_path: Path, labels, choice, message):
    # A label without its hypothesis and a `labels` list raised a bare KeyError or
    # AttributeError; a misspelt choice said only "KeyError: 'Entailed'".
    doc = {"text": "A b. C d.", "spans": [[0, 4], [5, 9]], "annotation_sets": [
        {"annotations": {"nda-1": {"choice": choice, "spans": [1]}}}]}  # fmt: skip
    path = tmp_path / "cnli.json"
    path.write_text(json.dumps({"documents": [doc], "labels": labels}))
    with pytest.raises(DataError, match=message):
        read_contractnli(path)
