"""Skills: small models with one job each."""

from slmstack.skills.base import Skill, load
from slmstack.skills.classifier import TextClassifier
from slmstack.skills.faq import FAQAnswerer
from slmstack.skills.language import LanguageDetector
from slmstack.skills.summarizer import Summarizer
from slmstack.skills.troubleshoot import Troubleshooter

__all__ = [
    "FAQAnswerer",
    "LanguageDetector",
    "Skill",
    "Summarizer",
    "TextClassifier",
    "Troubleshooter",
    "load",
]
