"""Workflows from YAML: error messages with lines and paths, skills loaded once, specs."""

from __future__ import annotations

import textwrap

import pytest

from slmstack import ConfigError, Prediction
from slmstack.workflows import WorkflowError, load_workflow
from workflow_doubles import Echo, Fixed, KeywordClassifier, Tagger

SKILLS = {
    "intent": KeywordClassifier({"faq": 0.9, "complaint": 0.9}),
    "sentiment": Fixed(Prediction(label="negative", confidence=0.8), produces=frozenset({"label"})),
    "entities": Tagger({"Acme": "ORG"}),
    "summarizer": Echo(),
}


def write(tmp_path, body: str):
    path = tmp_path / "wf.yaml"
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """\
name: desk
inbox: sqlite:///inbox.db
blocks:
  hand_off:
    - escalate: {reason: needs a person}
steps:
  - cascade:
      threshold: 0.5
      tiers: [intent, {block: hand_off}]
  - route:
      on: intent
      branches:
        faq: {template: "FAQ: {input}"}
        complaint:
          - parallel: [sentiment, entities]
          - skill: {use: summarizer, id: summary, input: "{input} {sentiment.label}"}
          - block: hand_off
      default: {block: hand_off}
"""


def test_good_workflow_runs_and_relative_inbox_is_next_to_file(tmp_path):
    wf = load_workflow(write(tmp_path, GOOD), skills=SKILLS)
    assert wf.name == "desk"
    assert wf.run("faq: hours").answer == "FAQ: faq: hours"
    r = wf.run("complaint about Acme")
    assert r.status == "escalated"
    assert (tmp_path / "inbox.db").is_file()
    assert (
        wf.inbox.get(r.escalation.packet_id).summary == "summary of: complaint about Acme negative"
    )
    # trace paths are the paths in the file
    paths = [t.path for root in r.trace for t in root.walk()]
    assert "steps[1].route.branches.complaint[0].parallel[1]" in paths
    assert "blocks.hand_off[0]" in paths


def test_unknown_skill_names_line_path_and_suggestion(tmp_path):
    body = GOOD.replace("- parallel: [sentiment, entities]", "- parallel: [sentimnt, entities]")
    with pytest.raises(WorkflowError) as info:
        load_workflow(write(tmp_path, body), skills=SKILLS)
    message = str(info.value)
    assert (
        "wf.yaml:15: steps[1].route.branches.complaint[0].parallel[0]: "
        "unknown skill 'sentimnt' (did you mean 'sentiment'?)"
    ) in message
    # the summary's template now refers to an id no branch defined
    assert "template refers to {sentiment.label} but no earlier step has id 'sentiment'" in message
    assert message.startswith("workflow 'desk' has 2 errors:")


def test_branch_written_as_bare_skill_name(tmp_path):
    body = """\
    steps:
      - skill: intent
      - route:
          on: intent
          branches:
            complaint: sentimnt
          default: {template: other}
    """
    with pytest.raises(
        WorkflowError,
        match=r"wf.yaml:6: steps\[1\].route.branches.complaint: unknown skill 'sentimnt' "
        r"\(did you mean 'sentiment'\?\)",
    ):
        load_workflow(write(tmp_path, body), skills=SKILLS)


def test_missing_default_branch(tmp_path):
    body = """\
    steps:
      - skill: intent
      - route: {on: intent, branches: {faq: {template: x}}}
    """
    with pytest.raises(
        WorkflowError, match=r"wf.yaml:3: steps\[1\].route: missing required key 'default'"
    ):
        load_workflow(write(tmp_path, body), skills=SKILLS)


def test_unknown_key_and_unknown_kind_suggest_the_right_one(tmp_path):
    body = """\
    steps:
      - skill: intent
      - cascade: {treshold: 0.5, tiers: [intent, {template: x}]}
      - rute: {on: intent}
    """
    with pytest.raises(WorkflowError) as info:
        load_workflow(write(tmp_path, body), skills=SKILLS)
    message = str(info.value)
    assert (
        "wf.yaml:3: steps[1].cascade.treshold: unknown key 'treshold' (did you mean 'threshold'?)"
        in message
    )
    assert "wf.yaml:4: steps[2]: unknown step kind 'rute' (did you mean 'route'?)" in message


def test_cycle_between_blocks(tmp_path):
    body = """\
    blocks:
      a: [{block: b}]
      b: [{template: x}, {block: a}]
    steps:
      - block: a
    """
    with pytest.raises(WorkflowError, match=r"cycle: block a → b → a"):
        load_workflow(write(tmp_path, body), skills=SKILLS)


def test_a_block_no_step_uses_is_reported_with_its_line(tmp_path):
    body = """\
    blocks:
      used: [{template: x}]
      spare: [{skill: no_such_skill}]
    steps:
      - block: used
    """
    with pytest.raises(WorkflowError, match=r"wf.yaml:3: blocks.spare: block 'spare' is never used"):
        load_workflow(write(tmp_path, body), skills=SKILLS)


def test_a_bad_threshold_is_reported_at_its_own_key_once(tmp_path):
    body = """\
    steps:
      - cascade:
          tiers: [{template: a}, {template: b}, {template: c}]
          threshold: [0.7]
    """
    with pytest.raises(WorkflowError) as info:
        load_workflow(write(tmp_path, body), skills=SKILLS)
    message = str(info.value)
    assert "wf.yaml:4: steps[0].cascade.threshold: 3 tiers need 2 thresholds" in message
    assert "steps[0]: steps[0]" not in message


def test_type_mismatch_in_yaml(tmp_path):
    body = """\
    steps:
      - skill: summarizer
      - route: {on: summarizer, branches: {faq: {template: x}}, default: {template: y}}
    """
    with pytest.raises(
        WorkflowError, match=r"wf.yaml:3: steps\[1\]: type mismatch: a route needs a label"
    ):
        load_workflow(write(tmp_path, body), skills=SKILLS)


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"wf.yaml:3: not valid YAML: expected ',' or ']'"):
        load_workflow(write(tmp_path, "steps:\n  - skill: [unclosed\n"), skills=SKILLS)
    with pytest.raises(ConfigError, match="duplicate key 'steps'"):
        load_workflow(write(tmp_path, "steps: [intent]\nsteps: [intent]\n"), skills=SKILLS)
    with pytest.raises(WorkflowError, match="missing required key 'steps'"):
        load_workflow(write(tmp_path, "name: x\n"), skills=SKILLS)
    with pytest.raises(ConfigError, match="does not exist"):
        load_workflow(tmp_path / "nope.yaml")


def test_missing_skill_folder(tmp_path):
    body = "skills:\n  intent: models/intent\nsteps: [intent]\n"
    with pytest.raises(ConfigError, match=r"skills.intent: folder .*models/intent does not exist"):
        load_workflow(write(tmp_path, body))


def test_skill_spec_needs_path_or_kind(tmp_path):
    body = "skills:\n  intent: {params: {a: 1}}\nsteps: [intent]\n"
    with pytest.raises(WorkflowError, match=r"skills.intent: Value error, give either `path:`"):
        load_workflow(write(tmp_path, body))


@pytest.mark.slow
def test_skill_folder_used_twice_is_loaded_once_and_spec_is_cached(tmp_path, monkeypatch):
    data = tmp_path / "lang.csv"
    data.write_text(
        "text,label\n"
        "where is my parcel,en\nhow do I reset my password,en\nthe card does not work,en\n"
        "wo ist mein Paket,de\nwie setze ich mein Passwort zurück,de\ndie Karte funktioniert nicht,de\n"
    )
    body = """\
    skills:
      lang: {kind: slmstack.LanguageDetector.v1, train: lang.csv}
    steps:
      - route:
          skill: lang
          branches: {en: {template: english}, de: {template: deutsch}}
          default: {template: other}
    """
    wf = load_workflow(write(tmp_path, body))
    assert wf.run("Ich habe mein Passwort vergessen").answer == "deutsch"
    assert wf.run("I forgot my password").answer == "english"
    cached = visible(tmp_path / ".slmstack-cache")
    assert len(cached) == 1 and cached[0].name.startswith("lang-")
    # a skill whose saved state changes meaning is trained again, not loaded from the cache
    from slmstack.skills.language import LanguageDetector

    monkeypatch.setattr(LanguageDetector, "state_version", LanguageDetector.state_version + 1)
    load_workflow(write(tmp_path, body))
    assert len(visible(tmp_path / ".slmstack-cache")) == 2
    monkeypatch.undo()
    # the saved folder is reused, and two names on one folder share one object
    body2 = f"skills:\n  a: {cached[0]}\n  b: {{path: {cached[0]}}}\nsteps: [a, b]\n"
    wf2 = load_workflow(write(tmp_path, body2))
    assert wf2.skills["a"] is wf2.skills["b"]
    with pytest.raises(WorkflowError, match=r"'fr' is not a label .*"):
        load_workflow(write(tmp_path, body.replace("de: {template: deutsch}", "fr: {template: x}")))


def visible(folder):
    """A cache folder's entries, without its lock files."""
    return [p for p in folder.iterdir() if not p.name.startswith(".")]


def test_processes_starting_together_train_a_cached_spec_once(tmp_path, monkeypatch):
    """``serve --workers N``: every worker builds the workflow at once; one trains, the
    others wait for its save and load it, instead of training and saving over each other."""
    import threading
    import time

    from slmstack.skills.language import LanguageDetector

    (tmp_path / "lang.csv").write_text(
        "text,label\nwhere is my parcel,en\nthe card does not work,en\n"
        "wo ist mein Paket,de\ndie Karte funktioniert nicht,de\n"
    )
    body = "skills:\n  lang: {kind: slmstack.LanguageDetector.v1, train: lang.csv}\nsteps: [lang]\n"
    path = write(tmp_path, body)
    fits = []
    fit = LanguageDetector.fit

    def slow_fit(self, examples, *args, **kwargs):
        fits.append(1)
        time.sleep(0.3)  # long enough for the other to reach the cache check
        return fit(self, examples, *args, **kwargs)

    monkeypatch.setattr(LanguageDetector, "fit", slow_fit)
    errors = []

    def build():
        try:
            load_workflow(path)
        except Exception as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(fits) == 1
    assert len(visible(tmp_path / ".slmstack-cache")) == 1


def test_llm_escalation_declared_in_yaml(tmp_path):
    from workflow_doubles import FakeBackend

    body = """\
    backends:
      big: {model: qwen2.5-0.5b, runtime: llama_cpp}
    steps:
      - cascade:
          threshold: 0.95
          tiers: [intent, {escalate: {to: big, reason: unsure, prompt: "Q: {input}"}}]
    """
    llm = FakeBackend("from the LLM")
    wf = load_workflow(write(tmp_path, body), skills=SKILLS, backends={"big": llm})
    r = wf.run("faq: something")
    assert r.answer == "from the LLM" and r.escalation.to == "big"
    assert llm.requests[0].messages[-1].content == "Q: faq: something"
    bad = body.replace("runtime: llama_cpp", "runtim: llama_cpp")
    with pytest.raises(WorkflowError, match=r"backends.big.runtim: unknown key 'runtim'"):
        load_workflow(write(tmp_path, bad), skills=SKILLS)


def test_a_wrong_name_fails_before_any_skill_trains(tmp_path, monkeypatch):
    import slmstack.workflows.loader as loader

    def never(*args, **kwargs):
        raise AssertionError("skills were trained or loaded before the graph was checked")

    monkeypatch.setattr(loader, "resolve_skills", never)
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        textwrap.dedent(
            """\
            skills:
              intent: {kind: slmstack.TextClassifier.v1, train: intents.csv}
              saved: models/faq
            steps:
              - skill: intent
              - route:
                  on: intnt
                  branches: {faq: {skill: saved}}
                  default: {template: "{intent.text}"}
            """
        )
    )
    with pytest.raises(WorkflowError) as err:
        load_workflow(wf)
    message = str(err.value)
    assert "wf.yaml:7: steps[1].route.on: no earlier step has id 'intnt'" in message
    assert "(did you mean 'intent'?)" in message
    # the stand-in knows a TextClassifier produces no text: the template is refused too
    assert "{intent.text} needs 'text', but step 'intent' produces" in message


@pytest.mark.parametrize("value", ["true", "'0.5'"])
def test_a_threshold_that_is_not_a_number_is_refused(tmp_path, value):
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "steps:\n  - cascade:\n      threshold: " + value + "\n"
        "      tiers: [{template: a}, {escalate: {reason: r}}]\n"
    )
    with pytest.raises(WorkflowError, match="threshold"):
        load_workflow(wf)


def test_a_confidence_just_under_the_threshold_does_not_read_as_equal(tmp_path):
    from slmstack.workflows import CascadeStep, EscalateStep, SkillStep, Workflow

    wf = Workflow(
        [CascadeStep([SkillStep("intent"), EscalateStep("unsure")], threshold=0.5)],
        skills={"intent": Fixed(Prediction(label="x", confidence=0.4999))},
        inbox=f"sqlite:///{tmp_path / 'inbox.db'}",
    )
    reason = wf.run("hello").escalation.why
    assert "confidence 0.4999 < threshold 0.5" in reason


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("inbox: inbox.db\nsteps: [{escalate: {reason: r}}]\n", "not a database URL"),
        ("steps: [{escalate: {reason: ''}}]\n", "reason"),
        ("steps: [{escalate: {reason: r, max_tokens: -5}}]\n", "max_tokens"),
    ],
)
def test_bad_escalation_values_are_refused_when_the_file_loads(tmp_path, body, needle):
    wf = tmp_path / "wf.yaml"
    wf.write_text(body)
    with pytest.raises(WorkflowError, match=needle):
        load_workflow(wf)
