"""The ``ray:`` section of the serve config: replicas and queue limits on Ray Serve.

Read only by ``slmstack serve CONFIG --engine ray`` (:mod:`slmstack.serve.ray_engine`);
the local server ignores it, so one config serves on both engines. ::

    ray:
      ingress:                      # the HTTP API: routes, auth, limits, the workflows
        min_replicas: 1
        max_replicas: 4             # above min_replicas: autoscaled on ongoing requests
        target_ongoing_requests: 32
        max_ongoing_requests: 64    # per replica; more wait in Ray's queue...
        max_queued_requests: 1024   # ...up to this many, then 429 + Retry-After
        num_cpus: 0.5
      models: {max_replicas: 2, num_cpus: 1}   # each base model's deployment
      retry_after_s: 1.0
      imports: [mycompany.skills]   # imported first in each replica: your own skill classes

Batching on Ray reuses ``batching:`` (``max_batch`` texts, ``max_wait_ms``), so that one
config means the same thing on both engines.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class DeploymentSettings(BaseModel):
    """Replicas, autoscaling and queue limits of one kind of Ray Serve deployment.

    ``min_replicas == max_replicas`` is a fixed count; otherwise Ray Serve's autoscaler
    keeps each replica near ``target_ongoing_requests``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float = Field(default=2.0, gt=0)
    # Requests one replica works on at once; the rest wait in Ray's queue (per caller).
    max_ongoing_requests: int = Field(default=16, ge=1)
    # Requests waiting for a replica; above it Ray sheds them (429). Never unbounded:
    # an unbounded queue turns overload into timeouts for everyone.
    max_queued_requests: int = Field(default=256, ge=1)
    num_cpus: float = Field(default=1.0, ge=0)  # reserved per replica (its torch threads)

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas "
                f"({self.max_replicas}); raise max_replicas or lower min_replicas"
            )
        if self.target_ongoing_requests > self.max_ongoing_requests:
            raise ValueError(
                f"target_ongoing_requests ({self.target_ongoing_requests:g}) is above "
                f"max_ongoing_requests ({self.max_ongoing_requests}), so a replica never "
                "reaches it and the autoscaler never adds one; lower it"
            )
        return self

    @property
    def autoscaled(self) -> bool:
        """Whether Ray Serve scales the replicas (else a fixed count)."""
        return self.max_replicas > self.min_replicas


class IngressSettings(DeploymentSettings):
    """The ingress: it parses HTTP and runs the workflows' steps, so many requests at once."""

    target_ongoing_requests: float = Field(default=32.0, gt=0)
    max_ongoing_requests: int = Field(default=64, ge=1)
    max_queued_requests: int = Field(default=1024, ge=1)
    num_cpus: float = Field(default=0.5, ge=0)


class RayConfig(BaseModel):
    """The ``ray:`` section (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ingress: IngressSettings = Field(default_factory=IngressSettings)
    models: DeploymentSettings = Field(default_factory=DeploymentSettings)
    # The Retry-After of the 429 Ray's proxy sends when the ingress's queue is full.
    retry_after_s: float = Field(default=1.0, ge=0)
    # Modules every replica imports before it loads a skill: a replica is a fresh process,
    # so skill classes registered at run time (`@registry.skills.register`) exist there
    # only once their module is imported. Installed packages' entry points need nothing.
    imports: tuple[str, ...] = ()

    @field_validator("imports")
    @classmethod
    def _modules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [m for m in value if not _MODULE.match(m)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a module name; write it as in `import a.b`")
        return value


__all__ = ["DeploymentSettings", "IngressSettings", "RayConfig"]
