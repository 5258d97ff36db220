"""Base-model resolution: local folders, installed model packages, Hugging Face ids."""

from slmstack.models.catalog import KnownModel, known_models, register_model
from slmstack.models.resolve import ModelSource, resolve

__all__ = ["KnownModel", "ModelSource", "known_models", "register_model", "resolve"]
