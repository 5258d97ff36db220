"""Prometheus metrics of the server: requests, workflow steps, batches, queues, spend.

Every series is labelled by something the *config* bounds (a route template, a workflow,
a step, a batcher, an escalation reason), never by what a client sends, so a client cannot
grow the number of series: requests are labelled with the route template
(``/v1/skills/{name}/predict``) by :class:`MetricsMiddleware`, and a path that matches no
route is ``route="unmatched"``.

Series (all prefixed ``slmstack_``):

=========================================  =========  ================================
``http_requests_total``                    counter    route, method, status
``http_request_duration_seconds``          histogram  route, method
``step_duration_seconds``                  histogram  workflow, step
``batch_size``, ``batch_duration_seconds``  histogram  target (``skill:NAME``, ...)
``queue_depth``                            gauge      target
``escalations_total``                      counter    workflow, reason
``tokens_total``                           counter    target, direction (in / out)
``cost_dollars_total``                     counter    target
=========================================  =========  ================================

Cost arrives as integer nano-dollars (what the ledger stores) and is exposed in dollars,
Prometheus's convention of base units. The ledger, not this counter, is the record of
spend: a counter restarts with the process.

With several worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder before
the workers start: every worker then writes its series there and :meth:`Metrics.render`
sums them (``prometheus_client``'s multiprocess mode), so a scrape sees the whole server,
not one worker; call :meth:`Metrics.close` when a worker stops.

Example:
    >>> metrics = Metrics()
    >>> metrics.observe_request("/v1/models", "GET", 200, 0.002)
    >>> b"slmstack_http_requests_total" in metrics.render()[0]
    True
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slmstack.serve.asgi import UNMATCHED, route_template
from slmstack.serve.limits import CLIENT_GONE

if TYPE_CHECKING:
    from slmstack.workflows.trace import Result

_MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: a classifier answers in about a millisecond, a generator in seconds.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# A client may send any method name; anything else is counted as "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """The server's series, in a registry of their own (not the process-global one).

    A registry per instance lets tests and several apps in one process count apart, and
    keeps other libraries' metrics out of the server's page.
    """

    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get(_MULTIPROC) or None
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._requests = Counter(
            "slmstack_http_requests", "HTTP requests answered, by route template and status.",
            ["route", "method", "status"], registry=reg,
        )  # fmt: skip
        self._latency = Histogram(
            "slmstack_http_request_duration_seconds",
            "Time from request to the end of the response, by route template.",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self._steps = Histogram(
            "slmstack_step_duration_seconds",
            "Wall time of a workflow step, its children included.",
            ["workflow", "step"], buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self._batch_size = Histogram(
            "slmstack_batch_size", "Items in each batch a micro-batcher ran.",
            ["target"], buckets=BATCH_BUCKETS, registry=reg,
        )  # fmt: skip
        self._batch_seconds = Histogram(
            "slmstack_batch_duration_seconds", "Wall time of each batch a micro-batcher ran.",
            ["target"], buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self._depth = Gauge(
            "slmstack_queue_depth", "Items waiting in a micro-batcher's queue.",
            ["target"], registry=reg, multiprocess_mode="livesum",
        )  # fmt: skip
        self._escalations = Counter(
            "slmstack_escalations", "Workflow runs handed off, by escalation reason.",
            ["workflow", "reason"], registry=reg,
        )  # fmt: skip
        self._tokens = Counter(
            "slmstack_tokens", "Tokens read (in) and written (out) by models.",
            ["target", "direction"], registry=reg,
        )  # fmt: skip
        self._cost = Counter(
            "slmstack_cost_dollars", "Spend in US dollars, from the ledger's nano-dollars.",
            ["target"], registry=reg,
        )  # fmt: skip
        # The children of the request series by (route, method, status): bounded, as the
        # labels are (route templates, known methods, statuses).
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._usage_series: dict[str, tuple[Any, Any, Any]] = {}  # by target (config-bound)
        if self.multiprocess_dir is None:
            ProcessCollector(registry=reg)  # memory and CPU of this process

    # ------------------------------------------------------------------ observing
    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request; ``route`` is the template, never the raw path."""
        key = (route, method, status)
        series = self._request_series.get(key)
        if series is None:  # labels() validates and locks: once per series, not per request
            series = (
                self._requests.labels(route, method, str(status)),
                self._latency.labels(route, method),
            )
            self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def observe_step(self, workflow: str, step: str, seconds: float) -> None:
        """One step of one workflow run."""
        self._steps.labels(workflow, step).observe(seconds)

    def observe_batch(self, target: str, size: int, seconds: float) -> None:
        """One batch a micro-batcher ran (``target``: ``skill:NAME`` or ``workflow:NAME``)."""
        self._batch_size.labels(target).observe(size)
        self._batch_seconds.labels(target).observe(seconds)

    def batch_observer(self, target: str) -> Callable[[int, float], None]:
        """An ``on_batch(size, seconds)`` callback for ``target``'s micro-batcher."""

        def on_batch(size: int, seconds: float) -> None:
            self.observe_batch(target, size, seconds)

        return on_batch

    def set_queue_depth(self, target: str, depth: int) -> None:
        """Items now waiting in ``target``'s queue."""
        self._depth.labels(target).set(depth)

    def count_escalation(self, workflow: str, reason: str) -> None:
        """One run of ``workflow`` handed off for ``reason`` (a reason from its config)."""
        self._escalations.labels(workflow, reason).inc()

    def add_usage(self, target: str, tokens_in: int, tokens_out: int, cost_nano: int) -> None:
        """Tokens and spend of a call to ``target``; ``cost_nano`` in nano-dollars (ints)."""
        if min(tokens_in, tokens_out, cost_nano) < 0:
            raise ValueError(
                f"usage of {target!r} must not be negative; got tokens_in={tokens_in}, "
                f"tokens_out={tokens_out}, cost_nano={cost_nano}"
            )
        series = self._usage_series.get(target)
        if series is None:  # once per target (see observe_request)
            series = (
                self._tokens.labels(target, "in"),
                self._tokens.labels(target, "out"),
                self._cost.labels(target),
            )
            self._usage_series[target] = series
        series[0].inc(tokens_in)
        series[1].inc(tokens_out)
        series[2].inc(cost_nano / 1e9)

    def observe_run(self, workflow: str, result: Result, *, cost_nano: int = 0) -> None:
        """Everything one workflow run shows: each step's time, its escalation, its usage.

        Args:
            workflow: the workflow's name in the serve config.
            result: what ``Workflow.run`` (or one item of ``run_batch``) returned.
            cost_nano: the run's spend, as its ledger run row has it.
        """
        for root in result.trace:
            for node in root.walk():
                self.observe_step(workflow, node.name, node.latency_ms / 1000)
        if result.escalation is not None:
            self.count_escalation(workflow, result.escalation.reason)
        usage = result.usage
        self.add_usage(f"workflow:{workflow}", usage.input_tokens, usage.output_tokens, cost_nano)

    # ------------------------------------------------------------------ output
    def render(self) -> tuple[bytes, str]:
        """The Prometheus text page and its content type (every worker's, in multiprocess)."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)
        return generate_latest(merged), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Drop this worker's live gauges from the shared folder (multiprocess mode only)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)


class MetricsMiddleware:
    """Observe every HTTP request: its route template, method, status and duration.

    Install it outermost, so that requests refused by auth or limits are counted too.
    Duration runs to the end of the response body (of the whole stream, for SSE).

    Args:
        app: the ASGI app inside.
        metrics: where to count; default ``scope["app"].state.serve.metrics``, read per
            request so that the app may build its state after adding the middleware.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics | None = None):
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, timing it and noting the status it is answered with."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        route = route_template(scope) or UNMATCHED  # before the router rewrites the scope
        status = 500  # what the server answers when the app raises before responding

        async def send_and_see(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        finally:
            metrics = self._metrics or scope["app"].state.serve.metrics
            method = scope["method"] if scope["method"] in _METHODS else "other"
            if status == 500 and scope.get(CLIENT_GONE):  # nginx's "client closed request"
                status = 499
            metrics.observe_request(route, method, status, time.perf_counter() - start)
