"""``slmstack serve CONFIG --engine ray``: the same HTTP API, as Ray Serve deployments.

The method: the config becomes one Ray Serve application of two kinds of deployment
(:mod:`slmstack.serve.ray_deployments`):

- one :class:`~slmstack.serve.ray_deployments.SkillHost` per base model
  (:func:`~slmstack.serve.ray_plan.plan_hosts`): the skills on that base share one copy
  of its weights per replica, and ``@serve.batch`` gathers their calls into batches of
  at most ``batching.max_batch`` texts, waiting at most ``batching.max_wait_ms``;
- the :class:`~slmstack.serve.ray_deployments.Ingress`, Ray's HTTP proxy's only route: the
  local server's FastAPI app itself (``@serve.ingress``), so routes, auth, limits and
  schemas are the same code, and the workflows run in it with their steps calling the
  hosts.

Replicas, autoscaling and queue limits come from the config's ``ray:`` section
(:mod:`slmstack.serve.ray_config`). Overload is shed with 429 and ``Retry-After`` at both
doors: Ray's proxy answers 429 itself when the ingress's queue
(``ray.ingress.max_queued_requests``) is full (Ray Serve's ``BackpressureConfig``; Ray's
default there would be 503); a call a skill host sheds raises Ray's
``BackPressureError`` in the ingress, which becomes :class:`~slmstack.errors.Overloaded`
and the server's usual JSON 429. The ingress's own per-target queue (``limits.queue_size``)
sheds as the local server does.

Ray is imported only when this engine starts, so ``pip install slmstack`` stays light.
Without ``--ray-address`` a Ray instance is started for the server with no dashboard:
Ray's dashboard and job API run code for whoever can reach them (its GCS and raylet still
listen widely; see the README's "Securing a Ray cluster"). With
an address the application joins that cluster (every node then needs slmstack, the skill
folders and the config's files at the same paths).

Example:
    >>> from slmstack.serve.ray_engine import serve_on_ray
    >>> serve_on_ray("serve.yaml", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from slmstack import ray_cluster
from slmstack.errors import ConfigError, MissingDependencyError
from slmstack.serve.auth import ApiKeys
from slmstack.serve.config import ServeConfig, load_config
from slmstack.serve.ray_config import DeploymentSettings
from slmstack.serve.ray_plan import HostPlan, cpu_shortfall, plan_hosts

APP_NAME = "slmstack"  # the Ray Serve application's name
INGRESS = "ingress"  # the ingress deployment's name

_log = logging.getLogger("slmstack.serve")


def _ray() -> Any:
    """Ray and Ray Serve, or :class:`MissingDependencyError` naming the extra."""
    try:
        import ray
        from ray import serve  # noqa: F401  (Ray Serve is an extra of ray)
    except ImportError as exc:
        raise MissingDependencyError("ray[serve]", "ray", "slmstack serve --engine ray") from exc
    return ray


def build_application(
    config: ServeConfig | str | Path, *, runtime_env: dict[str, Any] | None = None
) -> Any:
    """The Ray Serve application of ``config``: skill hosts and the ingress, bound.

    Args:
        config: the validated serve config, or its YAML file.
        runtime_env: Ray's runtime environment of every replica (``env_vars``, ``pip``,
            ``working_dir``...); with ``ray.imports`` it brings your own skill classes.

    Raises:
        MissingDependencyError: Ray Serve is not installed.
        ConfigError: the config is invalid, or a workflow's skill folder is missing.
    """
    _ray()
    if not isinstance(config, ServeConfig):
        config = load_config(config, ray_imports=True)
    return _bind(config, plan_hosts(config), runtime_env)


def _bind(
    config: ServeConfig, plans: Sequence[HostPlan], runtime_env: dict[str, Any] | None
) -> Any:
    """:func:`build_application` for the planned skill hosts ``plans`` of ``config``."""
    from slmstack.serve.ray_deployments import Ingress, SkillHost

    keys = None if config.auth is None else ApiKeys.from_config(config.auth)
    if keys is None:
        _log.warning(
            "serving WITHOUT authentication: the config has no `auth:` section; add "
            "`auth:` with keys_env or keys_file before exposing the port"
        )
    from ray import serve

    ray_config, batching = config.ray, config.batching
    hosts: dict[str, Any] = {}
    for plan in plans:
        options = _settings(ray_config.models, ray_config.retry_after_s, runtime_env)
        host = serve.deployment(name=plan.name, **options)(SkillHost)
        bound = host.bind(
            [str(f) for f in plan.folders], max_batch=batching.max_batch,
            max_wait_s=batching.max_wait_ms / 1000,
            threads=max(1, int(ray_config.models.num_cpus)), imports=ray_config.imports,
        )  # fmt: skip
        hosts.update({str(folder): bound for folder in plan.folders})
        _log.info("deployment %s: %d skills (base: %s)", plan.name, len(plan.folders),
                  plan.base or "none")  # fmt: skip
    ingress = serve.deployment(
        name=INGRESS,
        graceful_shutdown_timeout_s=config.shutdown.drain_timeout_s,
        **_settings(ray_config.ingress, ray_config.retry_after_s, runtime_env),
    )(Ingress)
    return ingress.bind(config, keys, hosts, ray_config.retry_after_s)


def _settings(
    deployment: DeploymentSettings, retry_after_s: float, runtime_env: dict[str, Any] | None
) -> dict[str, Any]:
    """Ray Serve deployment options from one section of ``ray:``."""
    options: dict[str, Any] = {
        "max_ongoing_requests": deployment.max_ongoing_requests,
        "max_queued_requests": deployment.max_queued_requests,
        # Shed with our status: 429 and a Retry-After (Ray's default is a bare 503).
        "backpressure_config": {"status_code": 429, "retry_after_s": retry_after_s},
        "ray_actor_options": {"num_cpus": deployment.num_cpus},
    }
    if runtime_env:
        options["ray_actor_options"]["runtime_env"] = runtime_env
    if deployment.autoscaled:
        options["autoscaling_config"] = {
            "min_replicas": deployment.min_replicas,
            "max_replicas": deployment.max_replicas,
            "target_ongoing_requests": deployment.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = deployment.min_replicas
    return options


def deploy(
    config: ServeConfig | str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    runtime_env: dict[str, Any] | None = None,
    refuse_short_cpus: bool = True,
) -> None:
    """Start Ray Serve's HTTP proxy on ``host:port`` and run ``config``'s application.

    Returns once every replica is up (the models loaded, ``/readyz`` true). Ray must be
    initialised (:func:`slmstack.ray_cluster.connect`). When the minimum replicas reserve
    more CPUs than the cluster has, or one replica more than its largest node has, Ray
    Serve would wait for ever: that is refused, or
    with ``refuse_short_cpus=False`` (a cluster whose autoscaler adds nodes) logged.

    Raises:
        ConfigError: the config is invalid, the cluster has too few CPUs, or the
            application failed to start (the message holds Ray's reason, such as a skill
            that failed to load).
    """
    ray = _ray()
    from ray import serve

    if not isinstance(config, ServeConfig):
        config = load_config(config, ray_imports=True)
    plans = plan_hosts(config)
    nodes = [n.get("Resources", {}).get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    short = cpu_shortfall(config, plans, ray.cluster_resources().get("CPU", 0.0),
                          largest_node=max(nodes, default=0.0))  # fmt: skip
    if short and refuse_short_cpus:
        raise ConfigError(short)
    if short:
        _log.warning("%s; waiting for the cluster to add them", short)
    app = _bind(config, plans, runtime_env)
    serve.start(http_options={"host": host, "port": port})
    try:
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    except RuntimeError as exc:  # Ray reports a deployment that failed to start this way
        raise ConfigError(
            f"the Ray Serve application did not start: {exc}\nFix the cause above and run "
            "`slmstack serve --engine ray` again"
        ) from exc


class _StoppedEarly(Exception):
    """A signal arrived while the application was still being deployed."""


def serve_on_ray(
    config: ServeConfig | str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    runtime_env: dict[str, Any] | None = None,
) -> None:
    """Serve ``config`` on Ray Serve until SIGINT or SIGTERM, then take it down.

    Args:
        config: the validated serve config, or its YAML file.
        host: the interface Ray Serve's HTTP proxy listens on.
        port: its port.
        address: a Ray cluster to join; ``None`` starts a local Ray.
        runtime_env: Ray's runtime environment of every replica.

    On a signal the application is deleted (replicas drain within
    ``shutdown.drain_timeout_s`` and write their ledger rows), as it is when it fails to
    start; a Ray started here is then stopped, Serve with it. A joined cluster is left
    running, its Serve and other applications included: this driver only disconnects.
    """
    if not isinstance(config, ServeConfig):
        config = load_config(config, ray_imports=True)  # every config error now, before Ray starts
    ray = _ray()
    from ray import serve

    started = ray_cluster.connect(ray, address)
    stop, up = threading.Event(), threading.Event()

    def on_signal(sig: int, frame: FrameType | None) -> None:
        if not up.is_set():  # Ray Serve may wait for replicas for ever: stop waiting
            raise _StoppedEarly
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            # A local Ray has what it has; a joined cluster's autoscaler may add nodes.
            deploy(config, host=host, port=port, runtime_env=runtime_env,
                   refuse_short_cpus=address is None)  # fmt: skip
            up.set()
        except _StoppedEarly:
            _log.warning("stopped before the application was up; deleting what was deployed")
            return
        _log.info("serving on http://%s:%d (Ray Serve, pid %d)", host, port, os.getpid())
        while not stop.wait(0.5):  # short waits: the signal handler runs between them
            pass
        _log.info("stopping: deleting the application, replicas drain")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # Always ours to delete: replicas that failed to start would otherwise keep
        # retrying, and holding their CPUs, on a cluster that outlives this process.
        try:
            serve.delete(APP_NAME)
        except Exception as exc:  # nothing may have been deployed yet
            _log.warning("could not delete the application (if it was deployed): %s", exc)
        if started:
            if address is None:  # `serve.shutdown` ends every application on the cluster
                serve.shutdown()
            ray.shutdown()  # a local Ray stops; a joined cluster is only disconnected


__all__ = ["APP_NAME", "build_application", "deploy", "serve_on_ray"]
