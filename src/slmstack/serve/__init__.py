"""``slmstack serve``: every skill and workflow of a config over one HTTP API.

Needs the ``serve`` extra (``pip install 'slmstack[serve]'``).

Example:
    >>> from slmstack.serve import create_app
    >>> app = create_app("serve.yaml")  # doctest: +SKIP
"""

from slmstack.serve.app import app_from_env, create_app, openapi_document
from slmstack.serve.config import ServeConfig, load_config
from slmstack.serve.state import ServeState

__all__ = [
    "ServeConfig",
    "ServeState",
    "app_from_env",
    "create_app",
    "load_config",
    "openapi_document",
]
