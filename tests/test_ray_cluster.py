"""A Ray address is checked before Ray is asked to join it (Ray itself waits minutes)."""

from __future__ import annotations

import socket

import pytest

from slmstack.errors import ConfigError
from slmstack.ray_cluster import check_ray_address


def test_a_malformed_address_names_the_forms_that_work():
    with pytest.raises(ConfigError, match="not a Ray address: pass HOST:PORT"):
        check_ray_address("nonsense")
    check_ray_address("auto")
    check_ray_address("ray://head:10001")  # Ray Client times out on its own


def test_an_address_nothing_answers_on_fails_at_once():
    with socket.socket() as s:  # a port that was free a moment ago, now closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match=f"cannot reach a Ray cluster at 127.0.0.1:{port}"):
        check_ray_address(f"127.0.0.1:{port}", timeout_s=1)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_ray_address(f"127.0.0.1:{server.getsockname()[1]}")
