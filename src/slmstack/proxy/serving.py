"""Serving promoted tasks from their students: a cascade back to the LLM, audits, demotion.

The method, for each task shadowed by the proxy (``--shadow TASK=DIR`` with ``--tasks``):

1. **The decision.** The task's latest row of ``slmstack_promotions`` is read at start
   and every ``refresh_s`` seconds (one small query, in a thread), so ``slmstack
   promote`` run from another process takes effect without a restart. A task is served
   while its latest decision promoted it with a threshold.
2. **The cascade.** A chat call that matches a served task's template (its variable part
   cut out as shadowing does) goes to the student on the request path, in a worker
   thread (the event loop keeps serving other clients); calls that arrive while the
   student is busy wait and go in its next batch, which costs nothing when the traffic
   is light and amortises the model's per-call overhead when it is not. When the
   student is at least ``threshold`` confident (and did not abstain), its answer goes
   back as an OpenAI ``chat.completion`` (or its SSE stream, ending with ``[DONE]``):
   the label of a classification, the JSON object of an extraction, the text of a
   generation. Otherwise the call goes to the LLM as any other (the cascade), and is
   recorded and compared with the prediction already made. Every proxied answer says
   who answered in ``x-slmstack-answered-by`` (``student`` or ``llm``).
3. **The audit.** A share ``audit_rate`` of the student's answers, chosen by a hash of
   the request id (deterministic: the same id is always in or out, and the choice cannot
   drift with load or time), is also sent to the LLM after the client has its answer, in
   a background task (at most ``AUDIT_CONCURRENCY`` at once, ``MAX_PENDING_AUDITS``
   waiting; beyond that an audit is skipped and counted), and compared: a shadow row of
   kind ``audit``. The audit's LLM call is spend (a ledger row) but no request of the app.
4. **The demotion.** After each stored audit, the task's last ``demote_window`` audits
   since its promotion (at least ``demote_min_n``) give ``k`` agreeing of ``n``; when the
   Wilson interval's *upper* bound (at the promotion's confidence) falls under the
   promotion's ``min_agreement``, a ``promoted=False`` decision is recorded ("demoted:
   ...") and the task goes back to the LLM (and shadowing) at once, with a warning.

Why these choices: the promotion needs the lower bound to reach the bar, and the
demotion needs the upper bound to fall under it, so a student near the bar is neither
promoted nor demoted on noise, and one that fell clearly below it is caught within a few
dozen audits (the window since the promotion keeps an earlier spell's audits from
demoting a fresh promotion). Audits are sampled among the student's own answers, the
ones whose quality is at stake; the calls under the threshold are compared anyway,
since the LLM answers them. What it costs: ``audit_rate`` of the served calls still
reach the LLM (5% by default); a matching call waits for the student (a few
milliseconds for a MiniLM classifier on CPU) before it reaches the LLM when the student
is unsure; and a demotion acts on audits, which come ``audit_rate`` times as often as
served calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from slmstack.errors import ConfigError
from slmstack.proxy.config import ProxyConfig
from slmstack.proxy.exchange import Exchange, Parsed
from slmstack.proxy.promote import Promotion, ShadowStore, wilson_lower, wilson_upper
from slmstack.proxy.recorder import Recorder
from slmstack.proxy.recording import Route, system_and_user
from slmstack.proxy.shadow import ShadowRow, ShadowTask, owner
from slmstack.proxy.student import HEADER, Batcher, respond, servable

_log = logging.getLogger("slmstack.proxy")
AUDIT_CONCURRENCY = 4  # audits in flight to the LLM at once
MAX_PENDING_AUDITS = 256  # audits waiting; beyond, skipped (and counted), never queued unbounded

Headers = list[tuple[bytes, bytes]]
# POSTs an audit upstream: (path, headers, body) -> (status, content type, body, error)
Fetch = Callable[[str, Headers, bytes], Awaitable[tuple[int, str, bytes, str | None]]]
Submit = Callable[[Exchange, Route | None], None]  # records a call


class Serving:
    """The served tasks of a proxy: decisions, students, audits and demotions.

    Args:
        tasks: the shadowed tasks (their templates and students).
        store: where decisions are read and written and comparisons are stored.
        templates: every known task (the tasks file's), so that a call goes to the most
            specific task that matches it, served or not.
        audit_rate, refresh_s, demote_window, demote_min_n: see
            :class:`~slmstack.proxy.config.ProxyConfig`.
        count_tokens: counts the tokens of a student's answer (its usage); ``None``: the
            answers carry no usage and their tokens are recorded as missing.

    Raises:
        ConfigError: a task is promoted in ``store`` but has no student here.
    """

    def __init__(
        self,
        tasks: Sequence[ShadowTask],
        store: ShadowStore,
        *,
        templates: Sequence[ShadowTask] = (),
        audit_rate: float = 0.05,
        refresh_s: float = 5.0,
        demote_window: int = 200,
        demote_min_n: int = 30,
        count_tokens: Callable[[str], int] | None = None,
    ):
        self.store = store
        mine = {t.task_id for t in tasks}
        self._templates = [*tasks, *(t for t in templates if t.task_id not in mine)]
        self.audit_rate = audit_rate
        self.refresh_s = refresh_s
        self.demote_window = demote_window
        self.demote_min_n = demote_min_n
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, len(tasks)), thread_name_prefix="proxy-student"
        )
        self._batchers = {t.task_id: Batcher(t, self._executor, count_tokens) for t in tasks}
        self._decisions: dict[str, Promotion | None] = {t.task_id: None for t in tasks}
        self._live: tuple[tuple[Batcher, Promotion], ...] = ()  # read on the loop, swapped whole
        self._lock = threading.Lock()
        self._warned: set[str | tuple[str, str]] = set()
        self._audits: set[asyncio.Task[None]] = set()
        self._audit_slots: asyncio.Semaphore | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._fetch: Fetch | None = None
        self._submit: Submit | None = None
        self.answered = 0  # calls the students answered
        self.cascaded = 0  # calls of served tasks sent to the LLM
        self.audits_skipped = 0  # audits not sent: too many waiting
        self.refresh(strict=True)

    # ------------------------------------------------------------------ decisions
    @property
    def active(self) -> bool:
        """Whether any task is served now (else the request path skips serving entirely)."""
        return bool(self._live)

    def served(self) -> dict[str, float]:
        """The tasks served now, with their thresholds."""
        return {b.task.task_id: float(d.threshold or 0.0) for b, d in self._live}

    def stats(self) -> dict[str, Any]:
        """The tasks served now (with their thresholds) and the calls' counts so far."""
        return {"tasks": self.served(), "answered": self.answered, "cascaded": self.cascaded,
                "audits_skipped": self.audits_skipped}  # fmt: skip

    def refresh(self, *, strict: bool = False) -> None:
        """Read each task's latest decision.

        A promoted task without a student here is an error when ``strict`` (at start),
        else a warning.
        """
        latest = self.store.latest()
        unserved = sorted(t for t, d in latest.items() if d.promoted and t not in self._batchers)
        if unserved and strict:
            raise ConfigError(_unserved(unserved, self.store.url))
        for task_id in unserved:
            if task_id not in self._warned:
                self._warned.add(task_id)
                _log.warning("%s", _unserved([task_id], self.store.url))
        for task_id, decision in latest.items():
            if task_id in self._batchers:
                self._apply(task_id, decision)

    def _apply(self, task_id: str, decision: Promotion) -> None:
        with self._lock:
            current = self._decisions[task_id]
            if current is not None and decision.at < current.at:
                return  # a refresh that read the store before a newer decision was applied
            self._decisions[task_id] = decision
            self._live = tuple(
                (self._batchers[t], d) for t, d in self._decisions.items()
                if d is not None and d.promoted and d.threshold is not None
                and d.student in (None, "", self._batchers[t].task.student_id)
            )  # fmt: skip
        was = current is not None and current.promoted
        mine = self._batchers[task_id].task.student_id
        if decision.promoted and decision.student not in (None, "", mine):
            if (task_id, mine) not in self._warned:
                self._warned.add((task_id, mine))
                _log.warning("task %s was promoted on the calls of student %s, but this proxy "
                             "runs student %s: it stays on the LLM (and shadowing) until "
                             "`slmstack promote --task %s` weighs this one's", task_id,
                             decision.student, mine, task_id)  # fmt: skip
        elif decision.promoted and decision.threshold is None and task_id not in self._warned:
            self._warned.add(task_id)
            _log.warning("task %s was promoted without a threshold (by an older slmstack); "
                         "run `slmstack promote --task %s` again to serve it", task_id,
                         task_id)  # fmt: skip
        elif decision.promoted and not was:
            _log.warning("task %s is answered by its student at confidence >= %.3f (%s)",
                         task_id, decision.threshold, decision.reason)  # fmt: skip
        elif was and not decision.promoted:
            _log.warning("task %s goes back to the LLM: %s", task_id, decision.reason)

    # ------------------------------------------------------------------ life
    async def start(self, fetch: Fetch, submit: Submit) -> None:
        """Start refreshing; ``fetch`` sends an audit upstream, ``submit`` records a call."""
        self._fetch, self._submit = fetch, submit
        self._audit_slots = asyncio.Semaphore(AUDIT_CONCURRENCY)
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def close(self, timeout_s: float = 30.0) -> None:
        """Stop refreshing, let the audits in flight finish, stop the student threads."""
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
            self._refresher = None
        if self._audits:
            await asyncio.wait(set(self._audits), timeout=timeout_s)
        self._executor.shutdown(wait=True)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:  # keep the last decisions; the loop must outlive a hiccup
                _log.error("cannot read the promotion decisions (the last ones stay): %s: %s",
                           type(exc).__name__, exc)  # fmt: skip

    # ------------------------------------------------------------------ the request path
    async def answer(self, path: str, body: bytes, headers: Headers, authorization: str | None,
                     started: float, t0: float, send: Any) -> Route | None:  # fmt: skip
        """Answer a chat call from a served task's student when it is confident enough.

        Returns:
            ``None`` when the call is no served task's; a route of role ``student`` when
            the student answered (the response is sent and recorded); of role
            ``cascade`` when the call must go to the LLM (the caller records it with it).
        """
        live = self._live
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(request, dict) or not servable(request):
            return None
        raw = request.get("messages")
        messages = [m for m in raw if isinstance(m, dict)] if isinstance(raw, list) else []
        system, user = system_and_user(Parsed(messages=messages))
        found = owner(self._templates, system, user)  # the most specific task owns the call
        served = next(((b, d) for b, d in live if found and b.task.task_id == found[0].task_id),
                      None)  # fmt: skip
        if found is None or served is None or not found[1].strip():
            return None  # a blank variable part: distillation drops those, the LLM answers
        (batcher, decision), variable = served, found[1]
        task_id, threshold = batcher.task.task_id, float(decision.threshold or 0.0)
        request_id = uuid.uuid4().hex
        try:
            answer = await batcher.predict(variable, messages)
        except Exception as exc:  # the student broke: the LLM answers, and the ledger says why
            _log.error("the student of task %s failed: %s: %s", task_id, type(exc).__name__, exc)
            self.cascaded += 1
            why = f"the student failed: {type(exc).__name__}: {exc}"
            return Route("cascade", request_id, task_id, None, 0.0, why)
        prediction, confidence = answer.prediction, float(answer.prediction.confidence)
        if prediction.abstained or confidence < threshold:
            self.cascaded += 1
            why = (f"the student abstained ({prediction.abstained})" if prediction.abstained
                   else f"confidence {confidence:.3f} < threshold {threshold:.3f}")  # fmt: skip
            return Route("cascade", request_id, task_id, prediction, answer.ms, why)
        why = f"confidence {confidence:.3f} >= threshold {threshold:.3f}"
        route = Route("student", request_id, task_id, prediction, answer.ms, why)
        content, error, ttfb = await respond(
            send, request, request_id, started, t0, task_id, answer
        )
        self.answered += 1
        kind = "text/event-stream" if request.get("stream") else "application/json"
        ms = (time.perf_counter() - t0) * 1000
        self._record(Exchange(path, body, content, 200, kind, "", authorization, started, ms,
                              ttfb or ms, error), route)  # fmt: skip
        if self._sampled(request_id):
            self._schedule_audit(path, request, headers, authorization, route)
        return route

    def _record(self, exchange: Exchange, route: Route) -> None:
        if self._submit is None:
            raise ConfigError("Serving.start(fetch, submit) was not called; start the proxy app")
        self._submit(exchange, route)

    # ------------------------------------------------------------------ audits
    def _sampled(self, request_id: str) -> bool:
        """Whether the call is audited: a hash of its id under ``audit_rate`` (see the module)."""
        digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") < self.audit_rate * 2**64

    def _schedule_audit(self, path: str, request: dict[str, Any], headers: Headers,
                        authorization: str | None, route: Route) -> None:  # fmt: skip
        if len(self._audits) >= MAX_PENDING_AUDITS:
            self.audits_skipped += 1
            if self.audits_skipped == 1 or self.audits_skipped % 1000 == 0:
                _log.warning("%d audits skipped so far: the LLM answers them slower than they "
                             "come; lower --audit-rate", self.audits_skipped)  # fmt: skip
            return
        task = asyncio.get_running_loop().create_task(
            self._audit(path, request, headers, authorization, route)
        )
        self._audits.add(task)
        task.add_done_callback(self._audits.discard)

    async def _audit(self, path: str, request: dict[str, Any], headers: Headers,
                     authorization: str | None, route: Route) -> None:  # fmt: skip
        assert self._fetch is not None and self._audit_slots is not None  # set by start()
        asked = {k: v for k, v in request.items() if k not in ("stream", "stream_options")}
        body = json.dumps(asked, ensure_ascii=False).encode()
        async with self._audit_slots:
            started, t0 = time.time(), time.perf_counter()
            status, content_type, content, error = await self._fetch(path, headers, body)
            ms = (time.perf_counter() - t0) * 1000
        if error is not None:
            _log.warning("the audit of call %s failed: %s", route.request_id, error)
        audit = Route("audit", route.request_id, route.task_id, route.prediction,
                      route.student_ms, "the student's answer checked with the LLM")  # fmt: skip
        self._record(Exchange(path, body, content, status, content_type, "", authorization,
                              started, ms, ms, error), audit)  # fmt: skip

    def audited(self, rows: Sequence[ShadowRow]) -> None:
        """Demote a task whose audits show its student fell under the bar (see the module).

        The recorder's thread calls this once ``rows`` are stored.
        """
        for task_id in sorted({r.task_id for r in rows if r.kind == "audit"}):
            decision = self._decisions.get(task_id)
            if decision is None or not decision.promoted:
                continue
            since = self.store.promoted_since(task_id)
            if since is None:  # decided otherwise since this proxy read the decisions
                continue
            seen = self.store.calls(task_id, window=self.demote_window, kind="audit",
                                    since=since)  # fmt: skip
            n, k = len(seen), sum(agree for _, agree in seen)
            if n < self.demote_min_n:
                continue
            upper = wilson_upper(k, n, decision.confidence)
            if upper >= decision.min_agreement:
                continue
            demotion = Promotion(
                task_id, datetime.now(UTC), False, n, k, wilson_lower(k, n, decision.confidence),
                decision.min_agreement, decision.confidence,
                f"demoted: the last {n} audits since the promotion at "
                f"{since.isoformat(timespec='seconds')} agreed {k}/{n}; the upper bound "
                f"{upper:.3f} at {decision.confidence:.0%} is under {decision.min_agreement}",
                student=decision.student,
            )  # fmt: skip
            self.store.record(demotion)
            self._apply(task_id, demotion)


def _unserved(task_ids: list[str], url: str) -> str:
    from slmstack.costs.ledger import shown_url

    ids = ", ".join(task_ids)
    first = task_ids[0]
    return (
        f"task {ids} is promoted in {shown_url(url)}, but the proxy has no student for it: "
        f"pass --tasks tasks.json --shadow {first}=STUDENT_DIR to serve it, or send it back "
        f"to the LLM with `slmstack promote --task {first} --demote`"
    )


def build_serving(config: ProxyConfig, recorder: Recorder) -> Serving | None:
    """The serving of ``config``'s shadowed tasks (``None`` when it shadows none).

    Raises:
        ConfigError: a task is promoted in the ledger but has no student (``--shadow``).
    """
    if recorder.shadow is None or recorder.shadow_store is None:
        try:
            store = ShadowStore(config.ledger, create=False)
        except ConfigError:  # no shadow tables: nothing was ever promoted here
            return None
        promoted = sorted(t for t, d in store.latest().items() if d.promoted)
        if promoted:
            raise ConfigError(_unserved(promoted, config.ledger))
        return None
    if recorder.pricing.count_tokens is None:
        _log.info("no --tokenizer: the students' answers carry no usage, and their tokens are "
                  "recorded as missing")  # fmt: skip
    return Serving(
        recorder.shadow.tasks, recorder.shadow_store, templates=recorder.shadow.templates,
        audit_rate=config.audit_rate,
        refresh_s=config.refresh_s, demote_window=config.demote_window,
        demote_min_n=config.demote_min_n, count_tokens=recorder.pricing.count_tokens,
    )  # fmt: skip


__all__ = ["AUDIT_CONCURRENCY", "HEADER", "MAX_PENDING_AUDITS", "Serving", "build_serving"]
