"""slmstack: replace calls to one large LLM with a stack of small, task-specific models.

Example:
    >>> import slmstack
    >>> clf = slmstack.TextClassifier(base="minilm", strategy="head")
    >>> clf.fit(slmstack.read_examples("intents.csv"))  # doctest: +SKIP
    >>> clf.predict(["I lost my card"])  # doctest: +SKIP
"""

from slmstack.backends import Backend, ChatMessage, Completion, CompletionRequest, load_backend
from slmstack.data.documents import read_clause_examples, read_field_examples
from slmstack.data.readers import read_examples, read_records
from slmstack.data.tagging import TaggedExample, read_conll, read_span_jsonl, read_tagged
from slmstack.errors import (
    ArtifactError,
    BackendError,
    ConfigError,
    DataError,
    DataWarning,
    IntegrityError,
    MissingDependencyError,
    ModelError,
    ModelNotFoundError,
    NotFittedError,
    SkillError,
    SlmstackError,
    UnsafeWeightsError,
)
from slmstack.models import ModelSource, known_models, resolve
from slmstack.retrieval import KBEntry, read_documents, read_kb
from slmstack.skills import FAQAnswerer, Skill, Summarizer, TextClassifier, Troubleshooter, load
from slmstack.data.clauses import ClauseExample
from slmstack.data.fields import FieldExample, FieldSpec
from slmstack.skills.clauses import ClauseFinder
from slmstack.skills.fields import FieldExtractor
from slmstack.skills.language import LanguageDetector
from slmstack.skills.spacy_tagger import SpacyTagger
from slmstack.skills.tagger import EntityTagger
from slmstack.types import Example, LabelScore, Prediction, Span, Usage
from slmstack.workflows import Inbox, Result, Workflow, load_workflow, run_batch

__version__ = "0.1.0"

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
    "IntegrityError",
    "KBEntry",
    "LabelScore",
    "LanguageDetector",
    "MissingDependencyError",
    "ModelError",
    "ModelNotFoundError",
    "ModelSource",
    "NotFittedError",
    "Prediction",
    "Result",
    "Skill",
    "SkillError",
    "SlmstackError",
    "SpacyTagger",
    "Span",
    "Summarizer",
    "TaggedExample",
    "TextClassifier",
    "Troubleshooter",
    "UnsafeWeightsError",
    "Usage",
    "Workflow",
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
