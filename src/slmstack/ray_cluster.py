"""Joining a Ray cluster or starting a local one, shared by ``serve`` and ``batch``.

The address is checked before Ray is asked to join it (Ray waits minutes on a wrong
one), and a local Ray starts without its dashboard (it runs jobs, that is code, for anyone
who reaches it) and advertises loopback only.
"""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

from slmstack.errors import ConfigError

_HOST_PORT = re.compile(r"^(?:ray://)?(?P<host>[^:/\s]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


def check_ray_address(address: str, *, timeout_s: float = 3.0) -> None:
    """Refuse a malformed address, and a ``HOST:PORT`` nothing answers on in ``timeout_s``.

    Accepted: ``auto``, ``HOST:PORT`` and ``ray://HOST:PORT``.

    Raises:
        ConfigError: naming the address and the fix.
    """
    if address == "auto":
        return
    found = _HOST_PORT.match(address)
    if found is None or not 0 < int(found["port"]) < 65536:
        raise ConfigError(
            f"--ray-address {address!r} is not a Ray address: pass HOST:PORT (the head's GCS "
            "port, 6379 by default), ray://HOST:10001 (Ray Client), or auto"
        )
    if address.startswith("ray://"):
        return  # Ray Client gives up on its own after 30 s, with its own message
    host = found["host"].strip("[]")
    try:
        with socket.create_connection((host, int(found["port"])), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); check the "
            "address and that the head node runs (`ray status` there), or leave out "
            "--ray-address to start a local Ray"
        ) from None


def connect(ray: Any, address: str | None, *, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at ``address``, or start a local one; whether it started here.

    ``ray`` is the imported module (the caller imports it, naming its own extra when it is
    missing); a Ray already initialised in this process is used as it is. ``num_cpus``
    sizes a local Ray (a cluster has its own).

    Raises:
        ConfigError: the address is malformed or nothing answers on it.
    """
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address is not None:
        check_ray_address(address)
        ray.init(address=address, **quiet)
        return True
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",  # Ray still binds GCS and raylet widely (README)
        **quiet,
    )
    return True
