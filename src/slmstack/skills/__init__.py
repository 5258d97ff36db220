"""Skills: small models with one job each."""

from slmstack.skills.base import Skill, load
from slmstack.skills.classifier import TextClassifier

__all__ = ["Skill", "TextClassifier", "load"]
