"""The generator of a ``Summarizer``: LoRA-tuned on the fit examples, served, recorded.

Method (``Summarizer(tune="lora")``): the (text, reference summary) examples are put in
the exact messages the skill sends at prediction time (:func:`.summary_text.lora_pairs`:
the same system prompt, sentence bound and instructions, no demonstrations), and a LoRA
adapter is trained on them over the skill's own base generator with
:func:`slmstack.training.lora.train_lora`. The best epoch is chosen by token loss on a
seeded ``val_fraction`` of the examples (10% by default), so nothing outside the fit
examples makes a choice.

Why: prompting alone does not make a 135M generator write support-desk summaries: on the
desk's complaints prompted SmolLM2 apologises ("I'm sorry for your loss, but I'm unable
to provide a response in this format...") or hands the complaint back, while with a LoRA
adapter (one trained on DialogSum, in a trial) it writes "The customer wants a
replacement of the blender." ``bench/complaint_summary.py`` measures both on 30 held-out
complaints (RESULTS.md). Demonstrations (``few_shot``) teach the format too, but they
cost their length on every call and a model this small copies them.

Cost: minutes of training on two CPU cores for a hundred short examples (measured in
RESULTS.md), an adapter of a few MB saved in the skill folder, and inference on the
transformers runtime, slower per token than llama.cpp.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slmstack.backends.base import Backend
from slmstack.backends.factory import load_backend
from slmstack.errors import ConfigError, DataError
from slmstack.models.catalog import known_models
from slmstack.skills.summary_text import lora_pairs

# LoraSettings fields a skill may override; system_prompt is the skill's own prompt.
_FIXED = frozenset({"system_prompt"})


def _settings_type() -> Any:
    from slmstack.training.lora import LoraSettings  # torch: only when LoRA is used

    return LoraSettings


def lora_fields() -> list[str]:
    """The :class:`~slmstack.training.lora.LoraSettings` fields ``lora=`` may set."""
    return [f.name for f in dataclasses.fields(_settings_type()) if f.name not in _FIXED]


def check_lora_overrides(value: Any) -> str | None:
    """The ``lora`` parameter's check: ``None`` or a mapping of valid LoRA settings."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return "None or a mapping of LoraSettings fields (epochs, rank, learning_rate, ...)"
    if "system_prompt" in value:
        return "LoRA settings without system_prompt (the adapter learns the skill's own prompt)"
    allowed = lora_fields()
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        return f"a mapping whose keys are among {', '.join(allowed)} (unknown: {unknown})"
    defaults = {f.name: f.default for f in dataclasses.fields(_settings_type())}
    for key, item in value.items():
        wanted = _wanted_type(key, defaults[key], item)
        if wanted is not None:
            return f"valid LoRA settings ({key} must be {wanted}, got {item!r})"
    try:
        settings = _settings_type()(**_as_fields(value))
        settings.check()
    except (ConfigError, TypeError) as exc:
        return f"valid LoRA settings ({exc})"
    return None


def _wanted_type(name: str, default: Any, value: Any) -> str | None:
    """The type ``value`` should have, like ``default``'s (YAML may give "1e-3" as text)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "max_steps":
        return None if value is None or (number and isinstance(value, int)) else "None or an int"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "True or False"
    if isinstance(default, int):
        return None if number and isinstance(value, int) else "an int"
    if isinstance(default, float):
        return None if number else "a number"
    if isinstance(default, tuple):
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        return None if ok else "a list of module names"
    return None


def _as_fields(value: Mapping[str, Any]) -> dict[str, Any]:
    # YAML and JSON give lists; LoraSettings keeps a tuple (it is frozen and hashable).
    out = dict(value)
    if "target_modules" in out:
        out["target_modules"] = tuple(out["target_modules"])
    return out


def check_tuning(params: Mapping[str, Any]) -> None:
    """Checks across a ``Summarizer``'s parameters that concern adapters and ``tune``.

    Raises:
        ConfigError: an adapter or ``tune='lora'`` off the transformers runtime, or with
            a settings combination LoRA cannot honour; the message names the fix.
    """
    model, runtime = params["model"], params["runtime"]
    is_object = isinstance(model, Backend)
    if params["adapter"] is not None and runtime != "transformers":
        raise ConfigError(
            "The 'runtime' parameter of Summarizer must be 'transformers' when an adapter "
            f"is set (llama.cpp runs no LoRA). Got {runtime!r} instead."
        )
    for name in ("adapter", "backend_options"):
        if is_object and params[name]:
            raise ConfigError(
                f"The {name!r} parameter of Summarizer must be None when model is a Backend "
                f"object. Got {params[name]!r} instead."
            )
    if params["tune"] != "lora":
        if params["lora"] is not None:
            raise ConfigError(
                f"The 'lora' parameter of Summarizer is used only when tune='lora'. Got "
                f"{params['lora']!r} with tune={params['tune']!r}; set tune='lora' or drop it."
            )
        return
    if is_object or runtime != "transformers":
        got = f"a {type(model).__name__} object" if is_object else f"runtime {runtime!r}"
        raise ConfigError(
            "Summarizer(tune='lora') trains and serves a LoRA adapter, which needs "
            f"runtime='transformers' and a model alias or path. Got {got} instead; pass "
            "runtime='transformers' (llama.cpp and remote APIs run no LoRA)."
        )
    for name, why in (
        ("adapter", "fit trains the adapter"),
        ("schema", "the adapter is trained on prose summaries"),
        ("few_shot", "demonstrations would change the prompt the adapter is trained on"),
    ):
        if params[name]:
            raise ConfigError(
                f"The {name!r} parameter of Summarizer must be unset with tune='lora' ({why}). "
                f"Got {params[name]!r} instead; drop it, or use tune='none'."
            )


def train_summary_adapter(
    base: str,
    examples: Sequence[tuple[str, str]],
    *,
    max_sentences: int,
    instructions: str,
    overrides: Mapping[str, Any] | None,
    seed: int,
) -> tuple[Path, dict[str, float]]:
    """Train a LoRA adapter on (text, summary) pairs into a new temporary folder.

    Returns the folder (the caller removes it) and the training metrics, numbers only
    (for ``Provenance.metrics``): steps, the chosen epoch, the first and last training
    loss, the validation loss before training and at the chosen epoch, pairs cut to
    ``max_length``, and seconds.
    """
    from slmstack.training.lora import train_lora

    if len(examples) < 2:
        raise DataError(
            f"Summarizer(tune='lora') trains on the fit examples and needs at least 2 "
            f"(text, summary) pairs; got {len(examples)}. Pass more, or use tune='none'."
        )
    system, pairs = lora_pairs(examples, max_sentences=max_sentences, instructions=instructions)
    fields = {"seed": seed, **_as_fields(overrides or {}), "system_prompt": system}
    settings = _settings_type()(**fields)
    out = Path(tempfile.mkdtemp(prefix="slmstack-summary-lora-"))
    try:
        result = train_lora(pairs, out, base=base, settings=settings)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    metrics: dict[str, float] = {
        "lora_steps": len(result.steps),
        "lora_best_epoch": result.best_epoch,
        "lora_train_pairs": result.n_train,
        "lora_val_pairs": result.n_val,
        "lora_pairs_cut": result.truncated_pairs,
        "lora_seconds": result.seconds,
    }
    if result.steps:
        metrics["lora_first_loss"] = result.steps[0]["loss"]
        metrics["lora_last_loss"] = result.steps[-1]["loss"]
    if result.val_loss_before is not None and result.val_loss:
        metrics["lora_val_loss_before"] = result.val_loss_before
        best = result.best_epoch  # 0: no epoch beat the base model, which was kept
        metrics["lora_val_loss"] = result.val_loss[best - 1] if best else result.val_loss_before
    return out, metrics


def generator_record(
    model: str | Backend, runtime: str, backend: Backend, adapter: Path | None, *, trained: bool
) -> dict[str, Any]:
    """The generator (and adapter) a Summarizer runs on, for provenance and drift checks."""
    sha = backend.model_sha256
    if isinstance(model, Backend):
        name, runtime = getattr(model, "name", type(model).__name__), "object"
    else:
        name = str(model)
    known = known_models().get(name)
    # 'ref' only with a hash: a saved base reference must be verifiable on load.
    record: dict[str, Any] = {"ref" if isinstance(sha, str) else "model": name,
                              "runtime": runtime, "sha256": sha,
                              "licence": known.licence if known else "unknown"}  # fmt: skip
    if adapter is not None:
        from slmstack.training.adapters import read_adapter_meta

        record["adapter_sha256"] = read_adapter_meta(adapter)["weights_sha256"]
        record["adapter_source"] = "fit (tune='lora')" if trained else "adapter="
    return record


def serve_backend(
    model: str, runtime: str, options: Mapping[str, Any], adapter: str | Path | None
) -> Backend:
    """The generator for ``model``; with ``adapter``, a view of it that runs the adapter.

    Adapters are named by their weights' hash, so skills that use the same adapter share
    it, and several adapters share one base model in memory.
    """
    if adapter is None:
        return load_backend(model, runtime=runtime, **options)
    from slmstack.backends.transformers_lm import TransformersBackend
    from slmstack.training.adapters import read_adapter_meta

    base = load_backend(model, runtime="transformers", **options)
    if not isinstance(base, TransformersBackend):
        raise ConfigError(f"runtime 'transformers' gave a {type(base).__name__}")
    name = "a" + str(read_adapter_meta(adapter)["weights_sha256"])[:12]
    if name not in base.adapters():
        base.add_adapter(name, adapter)
    return base.with_adapter(name)
