"""slmstack: replace calls to one large LLM with a stack of small, task-specific models.

Example:
    >>> import slmstack
    >>> clf = slmstack.TextClassifier(base="minilm", strategy="head")
    >>> clf.fit(slmstack.read_examples("intents.csv"))  # doctest: +SKIP
    >>> clf.predict(["I lost my card"])  # doctest: +SKIP
"""

from slmstack.backends import Backend, ChatMessage, Completion, CompletionRequest, load_backend
from slmstack.data.readers import read_examples, read_records
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
from slmstack.skills.language import LanguageDetector
from slmstack.types import Example, LabelScore, Prediction, Span, Usage
from slmstack.workflows import Inbox, Result, Workflow, load_workflow, run_batch

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "Backend",
    "BackendError",
    "ChatMessage",
    "Completion",
    "CompletionRequest",
    "ConfigError",
    "DataError",
    "DataWarning",
    "Example",
    "FAQAnswerer",
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
    "Span",
    "Summarizer",
    "TextClassifier",
    "Troubleshooter",
    "UnsafeWeightsError",
    "Usage",
    "Workflow",
    "known_models",
    "load",
    "load_backend",
    "load_workflow",
    "read_documents",
    "read_examples",
    "read_kb",
    "read_records",
    "resolve",
    "run_batch",
]
