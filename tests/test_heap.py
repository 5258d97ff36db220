"""``freeze_loaded``: loaded models move out of the cyclic collector's reach."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from serve_doubles import write_server
from slmstack.errors import ConfigError
from slmstack.heap import FREEZE_ENV, freeze_enabled, freeze_loaded
from slmstack.serve import ServeState, load_config


@pytest.fixture(autouse=True)
def _unfreeze():
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_freeze_moves_live_objects_out_of_collections(monkeypatch):
    monkeypatch.setenv(FREEZE_ENV, "1")
    gc.unfreeze()
    kept = Node()
    frozen = freeze_loaded()
    assert frozen == gc.get_freeze_count() > 1000
    assert not any(o is kept for o in gc.get_objects())  # collections no longer walk it


def test_garbage_cycles_are_collected_before_freezing(monkeypatch):
    monkeypatch.setenv(FREEZE_ENV, "1")
    gc.unfreeze()
    Node()  # unreachable at once, but a cycle: still tracked until a collection
    freeze_loaded()
    gc.unfreeze()
    assert not any(isinstance(o, Node) for o in gc.get_objects())


def test_switched_off(monkeypatch):
    monkeypatch.setenv(FREEZE_ENV, "0")
    gc.unfreeze()
    assert not freeze_enabled()
    assert freeze_loaded() == 0
    assert gc.get_freeze_count() == 0


def test_a_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(FREEZE_ENV, "sometimes")
    with pytest.raises(ConfigError, match=f"{FREEZE_ENV}='sometimes'.*1 .*or 0"):
        freeze_enabled()


def test_the_server_freezes_once_its_models_are_loaded(tmp_path: Path, monkeypatch):
    calls = []
    monkeypatch.setattr("slmstack.serve.state.freeze_loaded", lambda: calls.append("frozen"))
    state = ServeState.create(load_config(write_server(tmp_path)))

    async def main() -> None:
        await asyncio.to_thread(state.load)
        assert state.skills and calls == ["frozen"]
        await state.start()
        await state.close()

    asyncio.run(main())
