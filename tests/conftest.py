"""Test-wide settings: no network, no progress bars, tiny data only."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("SLMSTACK_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One pytest process starts hundreds of servers and workflows: freezing each one's objects
# would keep every test's cycles alive. tests/test_heap.py turns it on where it is tested.
os.environ.setdefault("SLMSTACK_GC_FREEZE", "0")


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray for every Ray test (batch and serve): 2 CPUs, loopback, no dashboard.

    Started by the first test that asks for it (Ray takes seconds to start), stopped at
    the end of the session; skips the test when Ray is not installed. Worker and raylet
    logs are not streamed to this process: Ray prints them from a thread for as long as
    it runs, into whatever ``sys.stdout`` is at that moment, and a raylet warning (disk
    over 95% full on a CI machine) once landed inside a later CLI test's ``--json``
    output.
    """
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray
    ray.shutdown()
