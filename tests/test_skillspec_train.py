"""`train:` in a skill spec: refused for ready-made skills that read no training file."""

from slmstack.workflows.skillspec import SkillSpec, check_skill_spec


def test_train_is_refused_for_a_ready_made_skill_without_a_reader():
    spec = SkillSpec(kind="slmstack.SpacyTagger.v1", train="data/entities.jsonl")
    problems = check_skill_spec("ner", spec)
    assert ("skills.ner.train", "slmstack.SpacyTagger.v1 is not trained from a file") in problems


def test_train_is_accepted_for_the_summarizer_and_for_trainable_skills():
    for kind in ("slmstack.Summarizer.v1", "slmstack.TextClassifier.v1"):
        problems = check_skill_spec("s", SkillSpec(kind=kind, train="data/x.jsonl"))
        assert not [p for p in problems if p[0] == "skills.s.train"], problems


def test_a_workflow_file_cannot_allow_pickled_weights(tmp_path):
    import pytest

    from slmstack.errors import ConfigError
    from slmstack.workflows.skillspec import resolve_skills

    spec = SkillSpec(kind="slmstack.TextClassifier.v1", params={"allow_pickle": True})
    problems = dict(check_skill_spec("intent", spec))
    assert "safetensors" in problems["skills.intent.params.allow_pickle"]
    with pytest.raises(ConfigError, match="cannot allow pickled weights"):
        resolve_skills({"intent": spec}, base=tmp_path, cache=tmp_path / "cache")
