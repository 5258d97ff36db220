"""Test-wide settings: no network, no progress bars, tiny data only."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray for every Ray test (batch and serve): 2 CPUs, loopback, no dashboard.

    Started by the first test that asks for it (Ray takes seconds to start), stopped at
    the end of the session; skips the test when Ray is not installed.
    """
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()
