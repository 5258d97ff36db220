"""Skills: small models with one job each.

Importing this package registers every skill kind, so ``load(folder)`` and workflow
specs can find them by name.
"""

from slmstack.skills.base import Skill, load
from slmstack.skills.classifier import TextClassifier
from slmstack.skills.clauses import ClauseFinder
from slmstack.skills.faq import FAQAnswerer
from slmstack.skills.fields import FieldExtractor
from slmstack.skills.language import LanguageDetector
from slmstack.skills.spacy_tagger import SpacyTagger
from slmstack.skills.summarizer import Summarizer
from slmstack.skills.tagger import EntityTagger
from slmstack.skills.troubleshoot import Troubleshooter

__all__ = [
    "ClauseFinder",
    "EntityTagger",
    "FAQAnswerer",
    "FieldExtractor",
    "LanguageDetector",
    "Skill",
    "SpacyTagger",
    "Summarizer",
    "TextClassifier",
    "Troubleshooter",
    "load",
]
