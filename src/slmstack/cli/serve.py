"""``slmstack serve CONFIG [--host H] [--port P] [--workers N] [--engine local|ray]``.

Or ``--openapi FILE``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from slmstack.cli.common import cli_command, out
from slmstack.errors import ConfigError, MissingDependencyError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@cli_command
def serve(
    config: Annotated[
        Path | None, typer.Argument(help="The serve config YAML (skills, workflows, keys).")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes; each loads every model.")
    ] = 1,
    log_level: Annotated[
        str, typer.Option(help=f"uvicorn's log level: {', '.join(LOG_LEVELS)}.")
    ] = "info",
    openapi: Annotated[
        Path | None,
        typer.Option(help="Write the OpenAPI spec to this file and exit (needs no CONFIG)."),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="local: uvicorn here; ray: Ray Serve deployments (`ray:`).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to deploy on (HOST:6379); default: a local Ray."),
    ] = None,
) -> None:
    """Serve every skill and workflow of CONFIG over HTTP (FastAPI on uvicorn)."""
    try:
        import uvicorn

        from slmstack.serve.app import CONFIG_ENV, WORKERS_ENV, create_app, openapi_document
        from slmstack.serve.config import load_config
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "fastapi", "serve", "slmstack serve") from exc

    if openapi is not None:
        openapi.parent.mkdir(parents=True, exist_ok=True)
        openapi.write_text(json.dumps(openapi_document(), indent=2) + "\n", encoding="utf-8")
        out.print(f"wrote the OpenAPI spec to {openapi}", highlight=False)
        return
    if config is None:
        raise ConfigError("pass the serve config: slmstack serve serve.yaml")
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}; got {log_level!r}")
    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine must be local or ray; got {engine!r}")
    settings = load_config(config, ray_imports=engine == "ray")  # every error now, with its line
    if ray_address is not None and engine != "ray":
        raise ConfigError("--ray-address goes with --engine ray")
    check_port(host, port)  # before minutes of model loading, not after
    if engine == "ray":
        if workers != 1:
            raise ConfigError("--workers is for --engine local; on Ray set `ray.ingress` replicas")
        from slmstack.serve.ray_engine import serve_on_ray

        serve_on_ray(settings, host=host, port=port, address=ray_address)
        return
    options = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "timeout_graceful_shutdown": settings.shutdown.drain_timeout_s,
        "lifespan": "on",  # a model that fails to load fails the start
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
        return
    # Each worker process builds its own app: uvicorn imports the factory there, and the
    # factory reads the config's path from the environment the workers inherit.
    os.environ[CONFIG_ENV] = str(config.resolve())
    os.environ[WORKERS_ENV] = str(workers)
    uvicorn.run(
        "slmstack.serve.app:app_from_env",
        factory=True,
        workers=workers,
        **options,  # type: ignore[arg-type]
    )


def check_port(host: str, port: int) -> None:
    """Refuse a ``host:port`` another process listens on, or that cannot be bound at all."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host!r} is not an address of this machine ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is in use (another server?); stop it, or pass --port N"
                ) from None
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another --host "
                "or --port"
            ) from None
