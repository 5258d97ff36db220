"""The migration loop: a recording proxy in front of an app's LLM, masking, task discovery.

``slmstack proxy --upstream URL`` forwards an app's OpenAI calls unchanged and records
each one (prompt, answer, tokens, latency, cost) off the request path
(:mod:`slmstack.proxy.app`, :mod:`slmstack.proxy.recorder`); personal data is masked
reversibly before storage when asked (:mod:`slmstack.proxy.masking`); ``slmstack
discover`` groups the recorded calls into tasks and says which small model could take
each over (:mod:`slmstack.proxy.discover`).

Example:
    >>> from slmstack.proxy import Masker, generate_key, unmask
    >>> key = generate_key()
    >>> unmask(Masker(key).mask("call +44 20 7946 0958"), key)
    'call +44 20 7946 0958'
"""

from slmstack.proxy.app import ProxyApp, build_recorder, create_proxy_app
from slmstack.proxy.config import ProxyConfig
from slmstack.proxy.exchange import Exchange
from slmstack.proxy.masking import Masker, generate_key, key_from_env, strip_tokens, unmask
from slmstack.proxy.pii import KINDS, Found, find_pii
from slmstack.proxy.recorder import Recorder
from slmstack.proxy.recording import Pricing, build_rows
from slmstack.proxy.traffic import TrafficRow, TrafficStore

__all__ = [
    "KINDS",
    "Exchange",
    "Found",
    "Masker",
    "Pricing",
    "ProxyApp",
    "ProxyConfig",
    "Recorder",
    "TrafficRow",
    "TrafficStore",
    "build_recorder",
    "build_rows",
    "create_proxy_app",
    "find_pii",
    "generate_key",
    "key_from_env",
    "strip_tokens",
    "unmask",
]
