"""Keep CPython's cyclic garbage collector off the models a process has loaded.

A loaded MiniLM skill is tens of thousands of Python objects (modules, parameters, the
tokenizer's vocabulary); the support-desk example's skills are about 410,000. A full
(generation 2) collection walks every tracked object: 210 ms for those on a 2-core AMD
EPYC, and CPython starts one whenever enough new objects have survived, that is in the
middle of whichever request happens to allocate them. In ``bench/workflow_batch.py`` one
such pause was 0.29 s of a 2.0 s batch round.

:func:`freeze_loaded` calls :func:`gc.freeze` once the models are loaded: every object
alive then moves to a permanent generation that collections skip. Reference counting
still frees those objects when they are dropped; only a reference *cycle* among them
would stay in memory, and loaded models are meant to live as long as the process. The
server, ``slmstack run``, batch jobs and Ray replicas call it after loading.
``SLMSTACK_GC_FREEZE=0`` turns it off.
"""

from __future__ import annotations

import gc
import logging

from slmstack.switches import env_switch

FREEZE_ENV = "SLMSTACK_GC_FREEZE"

_log = logging.getLogger(__name__)


def freeze_enabled() -> bool:
    """Whether :func:`freeze_loaded` freezes (``SLMSTACK_GC_FREEZE``, default on)."""
    return env_switch(FREEZE_ENV, on_means="freeze")


def freeze_loaded() -> int:
    """Move every object alive now out of the cyclic collector's reach; how many are frozen.

    Call it once the long-lived objects (models, workflows) are loaded. Garbage already
    in cycles is collected first, so that it is not frozen with them. Returns 0 when
    ``SLMSTACK_GC_FREEZE=0``.
    """
    if not freeze_enabled():
        return 0
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    _log.debug("gc.freeze: %d objects kept out of cyclic collections", frozen)
    return frozen


__all__ = ["FREEZE_ENV", "freeze_enabled", "freeze_loaded"]
