"""slmstack: replace calls to one large LLM with a stack of small, task-specific models.

``import slmstack`` is light: it loads no torch, transformers or scikit-learn. Each
public name is imported on first use (PEP 562), so a script that only reads data or
calls a remote LLM never pays for the model libraries.

Example:
    >>> import slmstack
    >>> clf = slmstack.TextClassifier(base="minilm", strategy="head")  # doctest: +SKIP
    >>> clf.fit(slmstack.read_examples("intents.csv"))  # doctest: +SKIP
    >>> clf.predict(["I lost my card"])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from slmstack.errors import (
    ArtifactError,
    BackendError,
    ConfigError,
    DataError,
    DataWarning,
    InboxError,
    IntegrityError,
    MissingDependencyError,
    ModelError,
    ModelNotFoundError,
    NotFittedError,
    SkillError,
    SlmstackError,
    UnsafeWeightsError,
    WorkflowError,
)

__version__ = "0.1.0"

# Public name → the module that defines it, imported on first attribute access.
_LAZY: dict[str, str] = {
    "Backend": "slmstack.backends.base",
    "ChatMessage": "slmstack.backends.base",
    "ClauseExample": "slmstack.data.clauses",
    "ClauseFinder": "slmstack.skills.clauses",
    "Completion": "slmstack.backends.base",
    "CompletionRequest": "slmstack.backends.base",
    "EntityTagger": "slmstack.skills.tagger",
    "Example": "slmstack.types",
    "FAQAnswerer": "slmstack.skills.faq",
    "FieldExample": "slmstack.data.fields",
    "FieldExtractor": "slmstack.skills.fields",
    "FieldSpec": "slmstack.data.fields",
    "Inbox": "slmstack.workflows.inbox",
    "KBEntry": "slmstack.retrieval.knowledge",
    "known_models": "slmstack.models.catalog",
    "LabelScore": "slmstack.types",
    "LanguageDetector": "slmstack.skills.language",
    "LLMClassifier": "slmstack.skills.llm_classifier",
    "LLMExtractor": "slmstack.skills.llm_extractor",
    "load": "slmstack.skills.base",
    "load_backend": "slmstack.backends.factory",
    "load_workflow": "slmstack.workflows.loader",
    "ModelSource": "slmstack.models.resolve",
    "Prediction": "slmstack.types",
    "Provenance": "slmstack.artifacts",
    "read_clause_examples": "slmstack.data.documents",
    "read_conll": "slmstack.data.tagging",
    "read_documents": "slmstack.retrieval.chunking",
    "read_examples": "slmstack.data.readers",
    "read_field_examples": "slmstack.data.documents",
    "read_kb": "slmstack.retrieval.knowledge",
    "read_records": "slmstack.data.readers",
    "read_span_jsonl": "slmstack.data.tagging",
    "read_tagged": "slmstack.data.tagging",
    "resolve": "slmstack.models.resolve",
    "Result": "slmstack.workflows.trace",
    "run_batch": "slmstack.workflows.batch",
    "Skill": "slmstack.skills.base",
    "SpacyTagger": "slmstack.skills.spacy_tagger",
    "StaticTextClassifier": "slmstack.skills.static_classifier",
    "OnnxTextClassifier": "slmstack.skills.onnx_classifier",
    "Recommender": "slmstack.skills.recommender",
    "Span": "slmstack.types",
    "Summarizer": "slmstack.skills.summarizer",
    "TaggedExample": "slmstack.data.tagging",
    "TextClassifier": "slmstack.skills.classifier",
    "Troubleshooter": "slmstack.skills.troubleshoot",
    "Usage": "slmstack.types",
    "Workflow": "slmstack.workflows.engine",
}

__all__ = [
    "ArtifactError",
    "Backend",
    "BackendError",
    "ChatMessage",
    "ClauseExample",
    "ClauseFinder",
    "Completion",
    "CompletionRequest",
    "ConfigError",
    "DataError",
    "DataWarning",
    "EntityTagger",
    "Example",
    "FAQAnswerer",
    "FieldExample",
    "FieldExtractor",
    "FieldSpec",
    "Inbox",
    "InboxError",
    "IntegrityError",
    "KBEntry",
    "LLMClassifier",
    "LLMExtractor",
    "LabelScore",
    "LanguageDetector",
    "MissingDependencyError",
    "ModelError",
    "ModelNotFoundError",
    "ModelSource",
    "NotFittedError",
    "OnnxTextClassifier",
    "Prediction",
    "Provenance",
    "Recommender",
    "Result",
    "Skill",
    "SkillError",
    "SlmstackError",
    "SpacyTagger",
    "Span",
    "StaticTextClassifier",
    "Summarizer",
    "TaggedExample",
    "TextClassifier",
    "Troubleshooter",
    "UnsafeWeightsError",
    "Usage",
    "Workflow",
    "WorkflowError",
    "known_models",
    "load",
    "load_backend",
    "load_workflow",
    "read_clause_examples",
    "read_conll",
    "read_documents",
    "read_examples",
    "read_field_examples",
    "read_kb",
    "read_records",
    "read_span_jsonl",
    "read_tagged",
    "resolve",
    "run_batch",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'slmstack' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from slmstack.artifacts import Provenance
    from slmstack.backends.base import Backend, ChatMessage, Completion, CompletionRequest
    from slmstack.backends.factory import load_backend
    from slmstack.data.clauses import ClauseExample
    from slmstack.data.documents import read_clause_examples, read_field_examples
    from slmstack.data.fields import FieldExample, FieldSpec
    from slmstack.data.readers import read_examples, read_records
    from slmstack.data.tagging import TaggedExample, read_conll, read_span_jsonl, read_tagged
    from slmstack.models.catalog import known_models
    from slmstack.models.resolve import ModelSource, resolve
    from slmstack.retrieval.chunking import read_documents
    from slmstack.retrieval.knowledge import KBEntry, read_kb
    from slmstack.skills.base import Skill, load
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
    from slmstack.types import Example, LabelScore, Prediction, Span, Usage
    from slmstack.workflows.batch import run_batch
    from slmstack.workflows.engine import Workflow
    from slmstack.workflows.inbox import Inbox
    from slmstack.workflows.loader import load_workflow
    from slmstack.workflows.trace import Result
