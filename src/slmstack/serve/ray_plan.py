"""Which Ray Serve deployment hosts which skill: one deployment per base model.

The method: every skill folder the config serves, named under ``skills:`` or by path in
a served workflow's ``skills:``, is grouped by the base model its ``config.json``
records (``provenance.base``: the weights' sha256, else their reference). Each group is
one deployment (:class:`~slmstack.serve.ray_deployments.SkillHost`) whose replicas load
every skill of the group: skills on one base share one copy of its weights in a process
(:mod:`slmstack.models.shared`), so ten classifier heads on MiniLM cost one MiniLM per
replica, and their batches queue for the same cores instead of fighting over them. A
skill with no base (a static or keyword model) gets a deployment of its own.

Skills a workflow trains from data (``train:`` without ``path:``) are not planned: they
are built inside the ingress replicas, as the local server builds them.

Nothing here imports Ray or a model: planning reads JSON and YAML only, so it runs (and
is tested) without the ``ray`` extra.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from slmstack.errors import ConfigError
from slmstack.serve.config import ServeConfig


@dataclass(frozen=True)
class HostPlan:
    """One skill deployment: its name, the base model it shares, the skill folders."""

    name: str
    base: str  # "minilm@1a2b3c4d" ("" when the skill has no base model)
    folders: tuple[Path, ...]


def workflow_skill_folders(path: Path) -> dict[str, Path]:
    """The saved skill folders a workflow file names by path, by its skill key.

    A plain string (``intent: models/intent``) or a long form with ``path:``; both are
    relative to the workflow file, as the workflow loader reads them.

    Raises:
        ConfigError: the file is not YAML, or a named folder is not a saved skill.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"workflow file {path} cannot be read: {exc}") from None
    skills = raw.get("skills") if isinstance(raw, dict) else None
    out: dict[str, Path] = {}
    for key, spec in (skills or {}).items() if isinstance(skills, dict) else ():
        if not isinstance(spec, str | dict):
            raise ConfigError(
                f"{path}: skills.{key}: {spec!r} is not a skill entry; write a saved skill "
                "folder (`intent: models/intent`) or a mapping with `path:` or `kind:`"
            )
        rel = spec if isinstance(spec, str) else spec.get("path")
        if not isinstance(rel, str):
            continue  # trained from data by the loader, in the ingress
        folder = (path.parent / rel).resolve()
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"{path}: skills.{key}: {folder} is not a saved skill folder; train and save "
                "the skill there, or fix the path (relative to the workflow file)"
            )
        out[str(key)] = folder
    return out


def plan_hosts(config: ServeConfig) -> list[HostPlan]:
    """The skill deployments of ``config``: one per base model, in a stable order.

    Raises:
        ConfigError: a skill folder's ``config.json`` cannot be read, or a workflow's
            skill folder is missing.
    """
    folders = list(config.skills.values())
    for path in config.workflows.values():
        folders += workflow_skill_folders(path).values()
    groups: dict[str, list[Path]] = {}
    labels: dict[str, str] = {}
    for folder in dict.fromkeys(folders):  # each folder once, in config order
        key, label = _base_of(folder)
        key = key or f"folder:{folder}"  # no base: a deployment of its own
        groups.setdefault(key, []).append(folder)
        labels[key] = label
    plans, taken = [], set()
    for key, members in groups.items():
        label = labels[key]
        stem = f"base-{_slug(label)}" if label else f"skill-{_slug(members[0].name)}"
        name, n = stem, 2
        while name in taken:
            name, n = f"{stem}-{n}", n + 1
        taken.add(name)
        plans.append(HostPlan(name, label, tuple(members)))
    return plans


def cpus_at_start(config: ServeConfig, plans: Sequence[HostPlan]) -> float:
    """The CPUs Ray must reserve before the application is up: each deployment's minimum."""
    ray = config.ray
    return (len(plans) * ray.models.min_replicas * ray.models.num_cpus
            + ray.ingress.min_replicas * ray.ingress.num_cpus)  # fmt: skip


def cpu_shortfall(
    config: ServeConfig,
    plans: Sequence[HostPlan],
    available: float,
    *,
    largest_node: float | None = None,
) -> str:
    """Why ``config`` cannot start on a cluster with ``available`` CPUs; empty when it can.

    Ray Serve waits, without end and without saying why, for replicas it cannot place:
    when the minimum replicas reserve more CPUs than the cluster has, or when one replica
    reserves more than its largest node (``largest_node``, when known) has, as a cluster of
    many small nodes can have enough CPUs in all and still not one node to place it on.
    """
    need = cpus_at_start(config, plans)
    models, ingress = config.ray.models, config.ray.ingress
    if need > available + 1e-9:
        return (
            f"the config reserves {need:g} CPUs at start, and the Ray cluster has "
            f"{available:g}: {len(plans)} skill deployment(s) (one per base model) x "
            f"{models.min_replicas} replica(s) x ray.models.num_cpus {models.num_cpus:g}, "
            f"plus the ingress's {ingress.min_replicas} x ray.ingress.num_cpus "
            f"{ingress.num_cpus:g}. Ray Serve would wait for the missing CPUs for ever. Lower "
            "ray.models.num_cpus (a fraction such as 0.5 is allowed) or min_replicas, or add "
            "CPUs to the cluster"
        )
    sections = [("ingress", ingress.num_cpus)] + ([("models", models.num_cpus)] if plans else [])
    for section, cpus in sections:
        if largest_node is not None and cpus > largest_node + 1e-9:
            return (
                f"one replica reserves ray.{section}.num_cpus {cpus:g} CPUs, and the largest "
                f"node of the Ray cluster has {largest_node:g}: Ray Serve would wait for ever "
                f"for a node to place it on. Lower ray.{section}.num_cpus to {largest_node:g} "
                "or less, or add a node with more CPUs"
            )
    return ""


def _base_of(folder: Path) -> tuple[str, str]:
    """``(grouping key, label)`` of the base model a saved skill records; empty: none."""
    try:
        config: Any = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{folder}/config.json cannot be read: {exc}; re-save the skill"
        ) from None
    base = (config.get("provenance") or {}).get("base") or {}
    if not isinstance(base, dict):
        return "", ""
    sha, ref = str(base.get("sha256") or ""), str(base.get("ref") or "")
    if not sha and not ref:
        return "", ""
    label = f"{ref or 'base'}@{sha[:8]}" if sha else ref
    return (f"sha256:{sha}" if sha else f"ref:{ref}"), label


def _slug(text: str) -> str:
    """A deployment-name-safe form of ``text`` (letters, digits, ``-``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "x"


__all__ = ["HostPlan", "cpu_shortfall", "cpus_at_start", "plan_hosts", "workflow_skill_folders"]
