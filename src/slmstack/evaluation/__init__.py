"""Metrics, speed measurements and evaluation reports.

Each skill's ``evaluate`` method calls the function for its kind here; ``slmstack eval``
calls ``skill.evaluate``.
"""

from slmstack.evaluation.base import Predictor

__all__ = ["Predictor"]
