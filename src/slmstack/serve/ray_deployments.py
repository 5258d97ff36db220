"""The two Ray Serve deployment classes: :class:`SkillHost` and :class:`Ingress`.

Imports Ray at import time: import it through :mod:`slmstack.serve.ray_engine`, which
checks for the ``ray`` extra first and names it when it is missing.

- :class:`SkillHost`, one deployment per base model (:mod:`slmstack.serve.ray_plan`):
  each replica loads the skills of its group and answers ``predict(HostCall)`` through
  ``@serve.batch``, which gathers the calls of every ingress replica (a skill's direct
  requests and the workflows' steps alike) into batches of at most ``batching.max_batch``
  texts, waiting at most ``batching.max_wait_ms``. A batch holding several skills runs
  each skill once on its texts. The model runs in a thread, so the replica's event loop
  keeps taking calls meanwhile (the next batch forms while this one runs).
- :class:`Ingress`: the local server's FastAPI app (routes, auth, limits, schemas: the
  same code) over a :class:`~slmstack.serve.ray_remote.RayServeState`. The workflows run
  here; their skills are calls to the hosts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from ray import serve

from slmstack.errors import ConfigError, DataError, ServeError
from slmstack.models.onnx_runtime import THREADS_ENV as ONNX_THREADS_ENV
from slmstack.serve.app import create_app
from slmstack.serve.auth import ApiKeys
from slmstack.serve.config import ServeConfig, ThreadsConfig
from slmstack.serve.metrics import Metrics
from slmstack.serve.ray_remote import (
    HostAnswer,
    HostCall,
    RayServeState,
    SkillCard,
    portable,
    texts_in,
)
from slmstack.serve.state import _set_torch_threads


def import_all(modules: tuple[str, ...]) -> None:
    """Import ``modules`` in this replica (``ray.imports``), so their skills register."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"ray.imports: {module!r} cannot be imported in this replica: {exc}; install "
                "it on every node, or put its folder on PYTHONPATH (runtime_env env_vars)"
            ) from exc


class SkillHost:
    """The skills on one base model, batched with ``@serve.batch`` (see the module doc).

    Args:
        folders: the saved skill folders to load (each is its own key).
        max_batch: most texts in one batch (``batching.max_batch``).
        max_wait_s: longest a batch waits to fill (``batching.max_wait_ms``).
        threads: torch (and onnxruntime) threads, the CPUs the replica reserves.
        imports: modules to import first (``ray.imports``).
    """

    def __init__(
        self,
        folders: list[str],
        *,
        max_batch: int,
        max_wait_s: float,
        threads: int,
        imports: tuple[str, ...] = (),
    ):
        from slmstack.heap import freeze_loaded
        from slmstack.skills.base import load

        import_all(imports)
        os.environ.setdefault(ONNX_THREADS_ENV, str(threads))
        self.skills = {folder: load(Path(folder)) for folder in folders}
        freeze_loaded()  # this replica's process: see slmstack.heap
        _set_torch_threads(threads)
        # One model thread: two batches at once would share the same cores (see batcher).
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="slmstack-host",
            initializer=_set_torch_threads, initargs=(threads,),
        )  # fmt: skip
        batched: Any = self.predict  # @serve.batch's setters are not in its type
        batched.set_max_batch_size(max_batch)
        batched.set_batch_wait_timeout_s(max_wait_s)

    def card(self, key: str) -> SkillCard:
        """What skill ``key`` produces and can label (read by the ingress at its start)."""
        return SkillCard.of(self.skills[key])

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002, batch_size_fn=texts_in)
    async def predict(self, calls: list[HostCall]) -> list[HostAnswer]:
        """One answer per call; the skills run in the model thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, calls)

    def _run(self, calls: list[HostCall]) -> list[HostAnswer]:
        answers: list[HostAnswer | None] = [None] * len(calls)
        by_skill: dict[str, list[int]] = {}
        for i, call in enumerate(calls):
            by_skill.setdefault(call.key, []).append(i)
        for key, members in by_skill.items():
            for i, answer in zip(members, self._one_skill(key, [calls[i] for i in members]),
                                 strict=True):  # fmt: skip
                answers[i] = answer
        return [a if a is not None else HostAnswer(error=ServeError("no answer")) for a in answers]

    def _one_skill(self, key: str, calls: list[HostCall]) -> list[HostAnswer]:
        """One ``predict`` over the calls' texts; a ``DataError`` is isolated per call."""
        skill = self.skills.get(key)
        if skill is None:
            error = ServeError(f"this deployment does not host {key}; redeploy from the config")
            return [HostAnswer(error=error) for _ in calls]
        texts = [text for call in calls for text in call.texts]
        try:
            predictions = skill.predict(texts)
        except DataError as exc:  # one caller's bad input: fail it alone (as the batcher does)
            if len(calls) == 1:
                return [HostAnswer(error=portable(exc))]
            return [self._one_skill(key, [call])[0] for call in calls]
        except Exception as exc:  # the model failed: every caller of this batch hears it
            return [HostAnswer(error=portable(exc)) for _ in calls]
        out, start = [], 0
        for call in calls:
            out.append(HostAnswer(list(predictions[start : start + len(call.texts)])))
            start += len(call.texts)
        return out


@serve.ingress()
class Ingress:
    """The HTTP API: the local server's app over skills hosted by :class:`SkillHost`.

    Args:
        config: the validated serve config.
        keys: the API keys (digests only), read once by the driver, so that replicas on
            other nodes need neither the key variable nor the key file.
        hosts: skill folder → the handle of the deployment hosting it.
        retry_after_s: the Retry-After of calls a host sheds.
    """

    def __init__(
        self,
        config: ServeConfig,
        keys: ApiKeys | None,
        hosts: Mapping[str, Any],
        retry_after_s: float,
    ):
        import_all(config.ray.imports)
        targets = len(config.skills) + len(config.workflows)
        # Model threads here only wait on the hosts: one per target, so that no target
        # waits behind another's call. Torch is for skills a workflow trains in place.
        threads = ThreadsConfig(executor=config.threads.executor or max(1, targets),
                                torch=config.threads.torch or 1)  # fmt: skip
        config = config.model_copy(update={"threads": threads})
        state = RayServeState(
            config=config, metrics=Metrics(), keys=keys, hosts=dict(hosts),
            retry_after_s=retry_after_s,
        )  # fmt: skip
        self._app = create_app(config, state=state)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return self._app


__all__ = ["Ingress", "SkillHost"]
