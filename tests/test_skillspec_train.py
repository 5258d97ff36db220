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
