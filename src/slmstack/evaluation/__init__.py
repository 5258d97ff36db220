"""Metrics, speed measurements and evaluation reports."""

from slmstack.evaluation import classification as _classification  # registers the evaluator
from slmstack.evaluation import extraction as _extraction  # fields and clauses
from slmstack.evaluation import retrieval as _retrieval  # FAQ and troubleshooter evaluators
from slmstack.evaluation import summaries as _summaries  # registers the evaluator
from slmstack.evaluation import tagging as _tagging  # entity taggers
from slmstack.evaluation.base import evaluate_skill, evaluators

__all__ = ["evaluate_skill", "evaluators"]
del _classification, _extraction, _retrieval, _summaries, _tagging
