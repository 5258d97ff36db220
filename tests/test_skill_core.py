"""The skill core: parameters, guarded inputs, atomic saves and verified loads.

Most tests use ``Centroid``, a tiny numpy skill defined here, so they run in milliseconds;
the ones about base models use the real TextClassifier.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pytest
from sklearn.base import clone

from fixtures import TRAIN
from slmstack import registry
from slmstack.artifacts import Provenance
from slmstack.errors import ArtifactError, ConfigError, DataWarning, NotFittedError
from slmstack.skills.base import Skill, Tensors, load
from slmstack.skills.params import Check, Interval
from slmstack.types import Example, Prediction


@registry.skills.register("tests.Centroid.v1")
class Centroid(Skill):
    """Nearest label centroid over letter counts: a real (if weak) classifier."""

    skill_name = "tests.Centroid.v1"
    produces = frozenset({"label"})
    constraints: ClassVar[Mapping[str, Check]] = {"top_k": Interval(int, 1, None)}

    def __init__(self, *, metric: Literal["l1", "l2"] = "l2", top_k: int = 1, scale: float = 1.0):
        self.metric = metric
        self.top_k = top_k
        self.scale = scale

    @staticmethod
    def _vec(text: str) -> np.ndarray:
        v = np.zeros(26, dtype=np.float32)
        for ch in text.lower():
            if "a" <= ch <= "z":
                v[ord(ch) - 97] += 1
        return v / max(1.0, float(v.sum()))

    def fit(self, examples: Sequence[Example]) -> Self:
        from slmstack.data.validation import drop_duplicates

        self._check_params()
        examples, dropped = drop_duplicates(examples)
        self.classes_ = sorted({ex.label for ex in examples})
        self.centroids_ = np.stack(
            [np.mean([self._vec(e.text) for e in examples if e.label == c], axis=0)
             for c in self.classes_]
        )  # fmt: skip
        self.provenance_ = self._provenance(rows=len(examples), duplicates_dropped=dropped)
        return self

    def _predict(self, texts: Sequence[str]) -> list[Prediction]:
        out = []
        for t in texts:
            d = np.abs(self.centroids_ - self._vec(t)).sum(axis=1)
            out.append(Prediction(label=self.classes_[int(d.argmin())], confidence=0.9))
        return out

    def _state(self) -> tuple[dict[str, Any], Tensors]:
        return {"labels": self.classes_}, {"centroids": {"c": self.centroids_}}

    def _restore(self, config: Mapping[str, Any], tensors: Tensors, folder: Path) -> None:
        self.classes_ = list(config["labels"])
        self.centroids_ = tensors["centroids"]["c"]


@pytest.fixture
def fitted() -> Centroid:
    return Centroid().fit(TRAIN)


# ---------------------------------------------------------------------- parameters
def test_get_params_come_from_the_signature_and_clone_works(fitted):
    assert fitted.get_params() == {"metric": "l2", "top_k": 1, "scale": 1.0}
    copy = clone(Centroid(top_k=2))
    assert copy.get_params()["top_k"] == 2 and not copy.is_fitted


def test_clone_of_a_real_skill():
    from slmstack import TextClassifier

    skill = TextClassifier(strategy="finetune", epochs=2)
    copy = clone(skill)
    assert copy.get_params() == skill.get_params() and copy is not skill


def test_bad_values_are_refused_with_the_allowed_values():
    with pytest.raises(
        ConfigError, match=r"'metric' parameter of Centroid must be 'l1' or 'l2'\. Got 'l3'"
    ):
        Centroid(metric="l3").fit(TRAIN)  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"'top_k' parameter of Centroid must be an int >= 1\. Got 0"
    ):
        Centroid().set_params(top_k=0)
    with pytest.raises(
        ConfigError, match=r"'scale' parameter of Centroid must be a float\. Got 'x'"
    ):
        Centroid.check_params({"scale": "x"})


def test_unknown_parameter_gets_a_did_you_mean():
    with pytest.raises(ConfigError, match=r"has no parameter 'topk'\. Did you mean 'top_k'\?"):
        Centroid().set_params(topk=3)


def test_parameter_help_comes_from_the_init_comments():
    from slmstack import TextClassifier

    helps = {p.name: p.help for p in TextClassifier.parameters()}
    assert "low, so fine-tuning refines" in helps["learning_rate"]


# ---------------------------------------------------------------------- guarded inputs
@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_abstains_and_never_reaches_the_model(fitted, text):
    preds = fitted.predict(["the card never came", text])
    assert preds[0].label is not None
    assert preds[1].abstained == "empty_input"
    assert preds[1].label is None and preds[1].confidence == 0.0


def test_predict_before_fit_names_the_fix():
    with pytest.raises(NotFittedError, match=r"Call fit\(\.\.\.\) or Centroid\.load"):
        Centroid().predict(["x"])


def test_exact_duplicates_are_dropped_before_training_and_counted():
    data = TRAIN + TRAIN[:5]
    with pytest.warns(DataWarning, match="5"):
        skill = Centroid().fit(data)
    assert skill.provenance_.duplicates_dropped == 5
    assert skill.provenance_.rows == len(TRAIN)


# ---------------------------------------------------------------------- saving
def test_round_trip_through_the_generic_loader(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    again = load(folder)
    assert isinstance(again, Centroid)
    assert [p.label for p in again.predict(["my card", "password"])] == [
        p.label for p in fitted.predict(["my card", "password"])
    ]
    card = (folder / "model_card.md").read_text()
    assert "exact duplicates dropped" in card


def test_a_save_that_fails_halfway_leaves_the_old_skill_intact(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    class Broken(Centroid):
        def _write_extra(self, folder: Path) -> None:
            (folder / "extra.json").write_text("{}")  # a first file is written...
            raise OSError(28, "No space left on device")  # ...then the disk fills up

    broken = Broken().fit(TRAIN[:12])
    with pytest.raises(OSError, match="No space left"):
        broken.save(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert load(folder).predict(["card"])[0].label == fitted.predict(["card"])[0].label
    assert [p.name for p in tmp_path.iterdir()] == ["s"], "no temporary folder left behind"


def test_a_save_killed_between_its_renames_names_the_skill_set_aside(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    aside = tmp_path / ".s.old-0123abcd"
    folder.rename(aside)  # where a kill -9 between the two renames of a save leaves it
    with pytest.raises(ArtifactError, match=r"interrupted.*\.s\.old-0123abcd.*rename it back"):
        load(folder)
    aside.rename(folder)
    assert load(folder).predict(["card"])[0].label == fitted.predict(["card"])[0].label


def test_save_refuses_a_folder_of_other_files(fitted, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not a saved skill"):
        fitted.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_save_refuses_a_folder_inside_another_skill(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    # the outer skill would then hold files its config does not list, and fail to load
    with pytest.raises(ArtifactError, match=r"v2 lies inside the saved skill .*s\b"):
        fitted.save(folder / "v2")
    assert not (folder / "v2").exists()
    assert load(folder).predict(["card"])[0].label == fitted.predict(["card"])[0].label


def test_save_over_an_existing_skill_replaces_it(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    Centroid(top_k=2).fit(TRAIN).save(folder)
    assert load(folder).get_params()["top_k"] == 2


def test_a_skill_saved_to_the_working_folder_fills_it_in_place(fitted, tmp_path, monkeypatch):
    from slmstack.artifacts import check_output_folder

    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    check_output_folder(Path("."), force=False)
    inode = here.stat().st_ino
    assert fitted.save(Path(".")) == here
    # the shell's folder is still the folder it was: not swapped for a new one
    assert Path.cwd().stat().st_ino == inode and (here / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"], "no temporary folder left"
    assert load(Path(".")).predict(["card"])[0].label == fitted.predict(["card"])[0].label
    # replacing it would rename the shell's folder away: refused before any training
    with pytest.raises(ArtifactError, match="the folder you are working in"):
        check_output_folder(Path("."), force=True)


# ---------------------------------------------------------------------- loading
def _edit_config(folder: Path, edit: Any) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def test_a_file_missing_from_the_hash_table_is_refused(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    _edit_config(folder, lambda c: c["files"].pop("centroids.safetensors"))
    with pytest.raises(ArtifactError, match="does not list: centroids.safetensors"):
        load(folder)


def test_an_added_file_is_refused(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    (folder / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="extra.safetensors"):
        load(folder)


def test_a_null_hash_is_refused(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    _edit_config(folder, lambda c: c["files"].update({"centroids.safetensors": None}))
    with pytest.raises(ArtifactError, match="without a sha256"):
        load(folder)


def test_a_config_without_labels_is_an_artifact_error(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    _edit_config(folder, lambda c: c.pop("labels"))
    with pytest.raises(ArtifactError, match="no 'labels' entry"):
        load(folder)


def test_a_bad_parameter_in_config_is_an_artifact_error(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    _edit_config(folder, lambda c: c["params"].update({"top_k": -1}))
    with pytest.raises(ArtifactError, match="'top_k' parameter"):
        load(folder)


def test_a_folder_from_a_newer_format_is_refused_with_the_fix(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    _edit_config(folder, lambda c: c.update(format_version=99))
    with pytest.raises(ArtifactError, match=r"format 99.*upgrade slmstack"):
        load(folder)


def test_a_skill_saved_under_another_state_version_says_to_retrain(fitted, tmp_path, monkeypatch):
    folder = fitted.save(tmp_path / "s")
    assert json.loads((folder / "config.json").read_text())["state_version"] == 1
    monkeypatch.setattr(Centroid, "state_version", 2)  # what it saves changed meaning
    with pytest.raises(ArtifactError, match=r"state version 1.*now 2.*[Tt]rain it again"):
        load(folder)
    monkeypatch.setattr(Centroid, "state_version", 0)  # an older slmstack loads a newer save
    with pytest.raises(ArtifactError, match=r"state version 1.*upgrade slmstack"):
        load(folder)


def test_a_save_without_a_state_version_still_loads(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    _edit_config(folder, lambda c: c.pop("state_version"))  # saved before it was recorded
    assert load(folder).predict(["card"])[0].label == fitted.predict(["card"])[0].label


def test_a_config_that_is_not_utf8_is_an_artifact_error(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    (folder / "config.json").write_bytes(b'{"skill": "\xff"}')  # a damaged disk block
    with pytest.raises(ArtifactError, match=r"config.json is not valid UTF-8.*[Rr]e-save"):
        load(folder)


@pytest.mark.parametrize("key", ["params", "tensors", "provenance"])
def test_a_config_entry_of_the_wrong_type_is_an_artifact_error(fitted, tmp_path, key):
    folder = fitted.save(tmp_path / "s")
    _edit_config(folder, lambda c: c.update({key: ["x"]}))
    with pytest.raises(ArtifactError, match=rf"'{key}' entry must be a JSON object"):
        load(folder)


def test_tensors_must_be_files_the_hash_table_verifies(fitted, tmp_path):
    folder = fitted.save(tmp_path / "s")
    _edit_config(folder, lambda c: c["files"].pop("centroids.safetensors"))
    (folder / "centroids.safetensors").unlink()  # the file and its hash both gone
    with pytest.raises(ArtifactError, match=r"centroids.safetensors.*not listed.*[Rr]e-save"):
        load(folder)
    other = fitted.save(tmp_path / "other")
    folder = fitted.save(tmp_path / "t")
    # a weight file outside the folder is never read, verified or not
    _edit_config(folder, lambda c: c["tensors"].update({"../other/centroids": "numpy"}))
    with pytest.raises(ArtifactError, match=r"\.\./other/centroids.safetensors.*not listed"):
        load(folder)
    assert other.is_dir()


def test_a_short_name_resolves_to_the_highest_version_by_number():
    reg: registry.Registry[object] = registry.Registry("skill")
    for version in (1, 9, 10):
        reg.register(f"acme.Thing.v{version}")(object())
    assert reg.resolve_name("Thing") == "acme.Thing.v10"  # not v9, as "v9" > "v10" in text


def test_provenance_round_trips():
    prov = Provenance(base={"ref": "x", "sha256": "a" * 64}, rows=3, metrics={"f1": 0.5})
    assert Provenance.from_json(json.loads(json.dumps(prov.to_json()))) == prov
    with pytest.raises(ArtifactError, match="unknown entries"):
        Provenance.from_json({"rows": 1, "surprise": 2})


# ---------------------------------------------------------------------- base models
@pytest.fixture(scope="module")
def head_skill(tmp_path_factory):
    from slmstack import TextClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return TextClassifier(strategy="head").fit(TRAIN).save(tmp_path_factory.mktemp("h") / "s")


def test_config_cannot_allow_pickles(head_skill, tmp_path, monkeypatch):
    import shutil

    from slmstack.models.resolve import resolve as real

    folder = tmp_path / "s"
    shutil.copytree(head_skill, folder)
    _edit_config(folder, lambda c: c["params"].update({"allow_pickle": True}))
    seen = []

    def spy(ref, **kw):
        seen.append(kw.get("allow_pickle"))
        return real(ref, **kw)

    monkeypatch.setattr("slmstack.skills._classifier_io.resolve", spy)
    skill = load(folder)
    assert seen == [False] and skill.allow_pickle is False
    load(folder, allow_pickle=True)
    assert seen[-1] is True


def test_a_null_base_hash_is_refused(head_skill, tmp_path):
    import shutil

    folder = tmp_path / "s"
    shutil.copytree(head_skill, folder)
    _edit_config(folder, lambda c: c["provenance"]["base"].update({"sha256": None}))
    with pytest.raises(ArtifactError, match="without a sha256"):
        load(folder)


def test_a_changed_base_is_refused(head_skill, tmp_path):
    import shutil

    from slmstack.errors import IntegrityError

    folder = tmp_path / "s"
    shutil.copytree(head_skill, folder)
    _edit_config(folder, lambda c: c["provenance"]["base"].update({"sha256": "b" * 64}))
    with pytest.raises(IntegrityError, match="Install the original base model"):
        load(folder)


def test_scope_model_that_cannot_flag_is_reported_at_training_time():
    from slmstack import TextClassifier

    with pytest.warns(DataWarning, match="can flag no text as out of scope"):
        TextClassifier(strategy="head").fit(TRAIN)


@pytest.mark.parametrize("kind", ["Troubleshooter", "Summarizer", "LLMClassifier", "LLMExtractor"])
def test_a_generator_runtime_is_checked_before_anything_trains_or_saves(kind):
    import slmstack

    cls = getattr(slmstack, kind)
    with pytest.raises(ConfigError, match="'runtime' parameter.*'llama_cpp', 'openai'"):
        cls.check_params({"runtime": "bogus"})
    cls.check_params({"runtime": "openai"})
