"""Skills: small models with one job each.

Skill classes are found by name through the registry (the ``slmstack.skills`` entry-point
group), so importing this package loads none of them; each class name below is imported
on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from slmstack.skills.base import Skill, load

_LAZY = {
    "ClauseFinder": "slmstack.skills.clauses",
    "EntityTagger": "slmstack.skills.tagger",
    "FAQAnswerer": "slmstack.skills.faq",
    "FieldExtractor": "slmstack.skills.fields",
    "LanguageDetector": "slmstack.skills.language",
    "LLMClassifier": "slmstack.skills.llm_classifier",
    "LLMExtractor": "slmstack.skills.llm_extractor",
    "SpacyTagger": "slmstack.skills.spacy_tagger",
    "StaticTextClassifier": "slmstack.skills.static_classifier",
    "OnnxTextClassifier": "slmstack.skills.onnx_classifier",
    "Recommender": "slmstack.skills.recommender",
    "Summarizer": "slmstack.skills.summarizer",
    "TextClassifier": "slmstack.skills.classifier",
    "Troubleshooter": "slmstack.skills.troubleshoot",
}

__all__ = [
    "ClauseFinder",
    "EntityTagger",
    "FAQAnswerer",
    "FieldExtractor",
    "LLMClassifier",
    "LLMExtractor",
    "LanguageDetector",
    "OnnxTextClassifier",
    "Recommender",
    "Skill",
    "SpacyTagger",
    "StaticTextClassifier",
    "Summarizer",
    "TextClassifier",
    "Troubleshooter",
    "load",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'slmstack.skills' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from slmstack.skills.classifier import TextClassifier
    from slmstack.skills.clauses import ClauseFinder
    from slmstack.skills.faq import FAQAnswerer
    from slmstack.skills.fields import FieldExtractor
    from slmstack.skills.language import LanguageDetector
    from slmstack.skills.llm_classifier import LLMClassifier
    from slmstack.skills.llm_extractor import LLMExtractor
    from slmstack.skills.onnx_classifier import OnnxTextClassifier
    from slmstack.skills.recommender import Recommender
    from slmstack.skills.spacy_tagger import SpacyTagger
    from slmstack.skills.static_classifier import StaticTextClassifier
    from slmstack.skills.summarizer import Summarizer
    from slmstack.skills.tagger import EntityTagger
    from slmstack.skills.troubleshoot import Troubleshooter
