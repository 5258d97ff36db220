"""Test-wide settings: no network, no progress bars, tiny data only."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
