"""The skill contract: ``fit`` → ``predict`` → ``save`` / ``load``, written once.

Every skill follows the estimator contract: hyper-parameters go in a keyword-only
``__init__`` with no logic, ``fit`` validates and returns ``self``, learned state ends
in ``_``, and ``load(save(skill))`` predicts exactly the same. A skill class owns every
fact about itself, so a new skill is one file plus its registration:

* ``skill_name`` (``"slmstack.TextClassifier.v1"``) and ``produces`` (the
  :class:`~slmstack.types.Prediction` fields it fills, checked by workflows);
* ``constraints`` (ranges of its numeric parameters; types come from the hints);
* :meth:`read_training_data` (what ``slmstack train`` and workflow specs feed ``fit``);
* :meth:`evaluate` (what ``slmstack eval`` reports);
* ``_state()`` / ``_restore()`` (what it saves; the folder, hashes, atomic swap and
  model card are done here).

This base class gives ``get_params``/``set_params`` (so ``sklearn.base.clone`` works),
the parameter checks, the guarded ``predict`` (a list of strings; an empty text abstains
with ``"empty_input"`` and never reaches the model), and ``save``/``load``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from slmstack import registry
from slmstack.artifacts import (
    Provenance,
    read_config,
    read_verified_config,
    refuse_inside_skill,
    render_card,
    save_folder,
)
from slmstack.errors import ArtifactError, ConfigError, DataError, NotFittedError
from slmstack.skills._state import read_tensors, write_tensors
from slmstack.skills.params import (
    Check,
    Param,
    check_param_names,
    check_param_values,
    signature_params,
)
from slmstack.types import Prediction

Tensors = dict[str, dict[str, Any]]
"""File stem → tensor name → torch tensor or numpy array (one safetensors file each)."""

EMPTY_INPUT = "empty_input"


class Skill(ABC):
    """A small model with one job.

    Subclasses set ``skill_name`` and ``produces``, register themselves (in
    ``pyproject.toml`` under ``[project.entry-points."slmstack.skills"]``, or with
    ``@registry.skills.register(name)``), and implement ``fit``, ``_predict``,
    ``_state``, ``_restore`` and ``read_training_data``.
    """

    skill_name: ClassVar[str]
    produces: ClassVar[frozenset[str]] = frozenset()
    constraints: ClassVar[Mapping[str, Check]] = {}
    trains_on_nothing: ClassVar[bool] = False  # fit([]) is a full fit (ready-made skills)
    # A ready-made skill whose fit can also use data (Summarizer: demonstrations, LoRA pairs).
    also_trains_on_data: ClassVar[bool] = False
    fitted_attribute: ClassVar[str] = "provenance_"
    # Whether a text is a whole document (a receipt, a contract), not one line of a file.
    reads_documents: ClassVar[bool] = False
    # Raised when what a fitted skill saves changes meaning, so that caches retrain it.
    state_version: ClassVar[int] = 1
    # Values of parameters that older saves lack (they predate the parameter).
    saved_defaults: ClassVar[Mapping[str, Any]] = {}
    provenance_: Provenance

    # ------------------------------------------------------------------ parameters
    @classmethod
    def parameters(cls) -> tuple[Param, ...]:
        """The hyper-parameters, read from ``__init__`` (name, type, default, help)."""
        return signature_params(cls)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameters as passed to ``__init__`` (``deep`` is for scikit-learn)."""
        return {p.name: getattr(self, p.name) for p in self.parameters()}

    def set_params(self, **params: Any) -> Self:
        """Change hyper-parameters, checked as ``__init__`` arguments are on ``fit``."""
        self.check_params(params)
        for key, value in params.items():
            setattr(self, key, value)
        return self

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        """Refuse unknown names and bad values before anything is built or trained."""
        known = [p.name for p in cls.parameters()]
        check_param_names(cls.__name__, known, params)
        check_param_values(cls.__name__, cls.parameters(), params, cls.constraints)

    def _check_params(self) -> None:
        """Check the current parameters; override to add checks across parameters."""
        self.check_params(self.get_params())

    # ------------------------------------------------------------------ data
    @classmethod
    def read_training_data(cls, *args: Any, **options: Any) -> Sequence[Any]:
        """Read the file (or folder) that ``fit`` trains on, as ``fit``'s argument.

        Subclasses take ``(path, *, <reader options>)``; the loose signature here lets
        each name its own options (they become ``--read key=value`` on the CLI).
        """
        raise ConfigError(
            f"{cls.__name__} cannot be trained from a file; build it in Python or see its "
            "documentation."
        )

    @abstractmethod
    def fit(self, examples: Sequence[Any]) -> Self:
        """Train on ``examples`` and return ``self``."""

    def evaluate(self, data: Path, **options: Any) -> dict[str, Any]:
        """Score the skill on a labelled file; a JSON-serialisable report."""
        raise ConfigError(f"{type(self).__name__} has no evaluation defined.")

    def training_data(self, path: Path, **options: Any) -> Sequence[Any]:
        """What ``fit`` trains on, read from ``path`` with this skill's own settings.

        A reader option that shares its name with one of the skill's parameters (how a
        :class:`~slmstack.skills.clauses.ClauseFinder` cuts contracts into clauses:
        ``min_chars``, ``max_chars``) takes the skill's value, so that training rows are
        cut as predictions will be. The generic trainers (``slmstack train KIND``, a
        workflow's ``train:``) read through this.

        Raises:
            ConfigError: ``options`` gives such an option a value other than the skill's.
        """
        import inspect

        accepted = inspect.signature(type(self).read_training_data).parameters
        params = self.get_params()
        for name in (n for n in accepted if n in params):
            if name in options and options[name] != params[name]:
                raise ConfigError(
                    f"reading {type(self).__name__}'s training data with {name}="
                    f"{options[name]!r} while the skill has {name}={params[name]!r} would cut "
                    f"training rows unlike predictions; set {name} once, as a skill parameter"
                )
            options[name] = params[name]
        return type(self).read_training_data(path, **options)

    # ------------------------------------------------------------------ predicting
    @property
    def is_fitted(self) -> bool:
        """Whether the skill was fitted or loaded."""
        return hasattr(self, self.fitted_attribute)

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            name = type(self).__name__
            raise NotFittedError(
                f"This {name} is not fitted yet. Call fit(...) or {name}.load(folder) first."
            )

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One :class:`Prediction` per input text, in order.

        Empty or whitespace-only texts abstain with ``"empty_input"``.
        """
        return self._guarded(texts, self._predict)

    @abstractmethod
    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Predictions for non-empty texts (the base class filters the empty ones)."""

    def _guarded(
        self, texts: Sequence[str], run: Callable[[list[str]], list[Prediction]]
    ) -> list[Prediction]:
        """Check ``texts``, run the model on the non-empty ones, abstain on the rest."""
        self._require_fitted()
        check_texts(texts)
        keep = [i for i, t in enumerate(texts) if t.strip()]
        out = [empty_prediction() for _ in texts]
        if keep:
            preds = run([texts[i] for i in keep])
            if len(preds) != len(keep):
                raise ArtifactError(f"{type(self).__name__} returned {len(preds)} predictions "
                                    f"for {len(keep)} texts")  # fmt: skip
            for i, pred in zip(keep, preds, strict=True):
                out[i] = pred
        return out

    # ------------------------------------------------------------------ persistence
    @abstractmethod
    def _state(self) -> tuple[dict[str, Any], Tensors]:
        """Learned state as (JSON-safe config entries, tensors by file stem)."""

    @abstractmethod
    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        """Fill a skill built from its saved parameters with the saved state."""

    def _write_extra(self, folder: Path) -> None:  # noqa: B027  (an optional hook)
        """Write files that are not tensors (a fine-tuned encoder folder, vocabularies)."""

    def _saved_params(self) -> dict[str, Any]:
        """The parameters as written to ``config.json`` (override to make them JSON-safe)."""
        return self.get_params()

    def _card(self) -> dict[str, Any]:
        """Sections of the model card beyond provenance (override to add)."""
        return {}

    def save(self, path: str | Path) -> Path:
        """Write the skill to a folder, atomically, and return it.

        A non-empty folder that is not a skill, and a folder inside another skill (which
        would then fail its check), are refused; an existing skill is replaced only once
        the new one is completely written.
        """
        self._require_fitted()
        refuse_inside_skill(Path(path), "the folder")
        config, tensors = self._state()
        reserved = {"skill", "params", "tensors", "provenance", "files", "format_version",
                    "state_version"}  # fmt: skip
        if reserved & set(config):
            raise ArtifactError(f"_state() may not set {sorted(reserved & set(config))}")
        prov: Provenance = self.provenance_
        body = {
            "skill": self.skill_name,
            "state_version": self.state_version,
            "params": _absolute_base(self._saved_params()),
            "tensors": {stem: _tensor_kind(t) for stem, t in tensors.items()},
            **config,
            "provenance": prov.to_json(),
        }

        def write(tmp: Path) -> None:
            write_tensors(tmp, tensors)
            self._write_extra(tmp)

        card = render_card(
            type(self).__name__,
            {
                **self._card(),
                "Base model": prov.base or "none",
                "Training data": {
                    "sha256": prov.data_sha256,
                    "rows": prov.rows,
                    "exact duplicates dropped": prov.duplicates_dropped,
                },
                "Validation metrics": {k: _rounded(v) for k, v in prov.metrics.items()},
                "Training": {"seconds": round(prov.seconds, 1), "resumed": prov.resumed},
                "Parameters": {k: v for k, v in self.get_params().items()},
                "Library versions": prov.versions,
            },
        )
        return save_folder(Path(path), body, write, card)

    @classmethod
    def load(cls, path: str | Path, *, allow_pickle: bool = False) -> Self:
        """Rebuild a skill saved with :meth:`save` (every file verified by sha256).

        Only the caller can allow pickled base weights; the saved config cannot.
        """
        folder = Path(path)
        config = read_verified_config(folder, cls.skill_name, cls.__name__)
        _check_state_version(cls, config, folder)
        params = {**cls.saved_defaults, **_entry(config, "params", folder)}
        if "allow_pickle" in {p.name for p in cls.parameters()}:
            params["allow_pickle"] = allow_pickle
        try:
            cls.check_params(params)
        except ConfigError as exc:
            raise ArtifactError(f"{folder}/config.json: {exc}") from exc
        self = cls(**params)
        tensors = read_tensors(folder, _entry(config, "tensors", folder), config["files"])
        self.provenance_ = _provenance(config, folder)
        try:
            self._restore(config, tensors, folder)
        except KeyError as exc:
            raise ArtifactError(
                f"{folder}/config.json has no {exc.args[0]!r} entry; the file is incomplete "
                "or from another tool. Re-save the skill."
            ) from None
        return self

    def _provenance(self, **fields: Any) -> Provenance:
        """A :class:`Provenance` with the library versions filled in."""
        from slmstack.artifacts import library_versions

        return Provenance(versions=library_versions(), **fields)


def _entry(config: Mapping[str, Any], key: str, folder: Path) -> Any:
    if key not in config:
        raise ArtifactError(
            f"{folder}/config.json has no {key!r} entry; the file is incomplete or from "
            "another tool. Re-save the skill."
        )
    value = config[key]
    if not isinstance(value, Mapping):
        raise ArtifactError(
            f"{folder}/config.json: its {key!r} entry must be a JSON object, got "
            f"{type(value).__name__}; the file was edited or damaged. Re-save the skill."
        )
    return value


def _check_state_version(cls: type[Skill], config: Mapping[str, Any], folder: Path) -> None:
    """Refuse state saved under another ``state_version``: its numbers mean something else.

    Saves from before the version was recorded lack it and load as they always did.
    """
    saved = config.get("state_version", cls.state_version)
    if saved == cls.state_version:
        return
    what = f"{folder} holds a {cls.__name__} saved with state version {saved!r}"
    if isinstance(saved, int) and saved > cls.state_version:
        raise ArtifactError(
            f"{what}, newer than this slmstack reads ({cls.state_version}); upgrade slmstack "
            "(pip install -U slmstack), or train the skill again with this one."
        )
    raise ArtifactError(
        f"{what}; this slmstack's {cls.__name__} is now {cls.state_version}, and what it saves "
        "changed meaning since. Train it again from the same data (`slmstack train ...`)."
    )


def _provenance(config: Mapping[str, Any], folder: Path) -> Provenance:
    body = _entry(config, "provenance", folder)
    try:
        return Provenance.from_json(body)
    except ArtifactError as exc:
        raise ArtifactError(f"{folder}/config.json: {exc}") from exc


def _absolute_base(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with a relative local ``base`` folder made absolute.

    Resolved from the folder the skill was trained in, ``"my-base"`` would be looked for
    in whatever folder loads it (a server, a workflow run elsewhere).
    """
    base = params.get("base")
    if isinstance(base, str) and base.strip():
        path = Path(base).expanduser()
        if not path.is_absolute() and path.is_dir():
            return {**params, "base": str(path.resolve())}
    return params


def _tensor_kind(tensors: Mapping[str, Any]) -> str:
    first = next(iter(tensors.values()), None)
    return "numpy" if first is None or type(first).__module__ == "numpy" else "torch"


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def empty_prediction() -> Prediction:
    """The abstention for an empty or whitespace-only text."""
    return Prediction(abstained=EMPTY_INPUT, warnings=("the text is empty",))


def check_texts(texts: Sequence[str]) -> None:
    """Refuse a bare string (a common slip) and non-string items, with the fix."""
    if isinstance(texts, str):
        raise ConfigError(
            "predict() takes a list of texts, got a single string. Wrap it: predict([text])."
        )
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"text #{i} is {type(t).__name__}, expected str")


def load(path: str | Path, *, allow_pickle: bool = False) -> Skill:
    """Load any saved skill folder, whatever its kind.

    Example:
        >>> skill = load("runs/intent")  # doctest: +SKIP
        >>> skill.predict(["where is my card?"])[0].label  # doctest: +SKIP
        'card_arrival'
    """
    config = read_config(Path(path))
    name = config.get("skill")
    if not isinstance(name, str):
        raise ArtifactError(f"{path}/config.json has no 'skill' entry; is this a skill folder?")
    cls = registry.skills.get(name)
    skill = cls.load(path, allow_pickle=allow_pickle)
    if not isinstance(skill, Skill):
        raise ArtifactError(f"{name} did not load a Skill from {path}")
    return skill
