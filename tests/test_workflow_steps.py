"""Every step kind, built in Python, run on test doubles."""

from __future__ import annotations

import time

import pytest

from slmstack import ConfigError, Prediction
from slmstack.workflows import (
    BlockStep,
    CascadeStep,
    EscalateStep,
    Inbox,
    MergeStep,
    ParallelStep,
    RouteStep,
    SequenceStep,
    SkillStep,
    TemplateStep,
    Workflow,
    WorkflowError,
)
from workflow_doubles import (
    Echo,
    FakeBackend,
    Fixed,
    KeywordClassifier,
    Tagger,
    account_and_complaint,
)


@pytest.fixture
def inbox(tmp_path):
    return Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")


def intent(**conf: float) -> KeywordClassifier:
    return KeywordClassifier(conf or {"faq": 0.9, "account": 0.8, "complaint": 0.95})


def desk(inbox, threshold=0.5, skills=None):
    skills = skills or {
        "intent": intent(),
        "sentiment": Fixed(
            Prediction(label="negative", confidence=0.8), produces=frozenset({"label"})
        ),
        "entities": Tagger({"ORD-1": "ORDER", "ana@x.io": "EMAIL"}),
        "summarizer": Echo(),
    }
    return Workflow(
        [
            CascadeStep([SkillStep("intent"), EscalateStep("intent unclear")], threshold=threshold),
            RouteStep(
                {
                    "faq": TemplateStep("FAQ answer for: {input}", id="answer"),
                    **account_and_complaint(),
                },
                EscalateStep("no route"),
                on="intent",
            ),
        ],
        skills=skills,
        name="desk",
        inbox=inbox,
    )


def test_route_sends_each_label_to_its_branch(inbox):
    wf = desk(inbox)
    r = wf.run("faq: opening hours?")
    assert r.status == "completed"
    assert r.answer == "FAQ answer for: faq: opening hours?"
    assert r.route == ["accept", "faq"]
    route = r.trace[1]
    assert route.decision.label == "faq" and "branch 'faq'" in route.decision.why
    assert r.outputs["answer"].text == r.answer


def test_route_default_branch_for_unknown_label(inbox):
    skills = {"intent": KeywordClassifier({"faq": 0.9}, default="weather")}
    wf = Workflow(
        [
            SkillStep("intent"),
            RouteStep({"faq": TemplateStep("faq")}, TemplateStep("other"), on="intent"),
        ],
        skills=skills,
    )
    r = wf.run("is it raining")
    assert r.answer == "other"
    assert r.trace[1].decision.taken == "default"
    assert "'weather' has no branch" in r.trace[1].decision.why


def test_route_on_abstention_takes_default():
    skills = {
        "faq": Fixed(
            Prediction(abstained="no_match", confidence=0.1), produces=frozenset({"label"})
        )
    }
    wf = Workflow(
        [RouteStep({"x": TemplateStep("x")}, TemplateStep("fallback"), skill="faq")], skills=skills
    )
    r = wf.run("anything")
    assert r.answer == "fallback"
    assert "abstained: no_match" in r.trace[0].decision.why
    # an out-of-scope classifier keeps its best guess: the route does not follow it
    guess = Prediction(label="x", confidence=0.3, abstained="out_of_scope")
    skills = {"faq": Fixed(guess, produces=frozenset({"label"}))}
    wf = Workflow(
        [RouteStep({"x": TemplateStep("x")}, TemplateStep("fallback"), skill="faq")], skills=skills
    )
    r = wf.run("anything")
    assert r.answer == "fallback" and r.trace[0].decision.taken == "default"
    assert r.trace[0].decision.why == "abstained: out_of_scope; its guess 'x' is not acted on → default"
    assert [x.answer for x in wf.run_batch(["a", "b"])] == ["fallback", "fallback"]


def test_the_trace_tree_marks_a_guess_that_abstained():
    from rich.console import Console

    from slmstack.workflows.render import trace_tree

    guess = Prediction(label="en", confidence=0.0, abstained="other_language")
    skills = {"lang": Fixed(guess, produces=frozenset({"label"}))}
    wf = Workflow(
        [RouteStep({"en": TemplateStep("en")}, TemplateStep("other"), skill="lang")], skills=skills
    )
    console = Console(record=True, width=200)
    console.print(trace_tree(wf.run("¿Dónde está mi paquete?")))
    node = next(line for line in console.export_text().splitlines() if "lang skill" in line)
    # it read "lang skill → en", as if the text were English
    assert "→ en (abstained: other_language)" in node and "conf" not in node


def test_a_route_skill_output_can_be_read_by_later_steps(inbox):
    # `skill: NAME` publishes its output under NAME, so templates, merges and packet
    # fields may name it, in the branches and after the route.
    lang = KeywordClassifier({"de": 0.9, "fr": 0.8}, default="en")
    route = RouteStep(
        {"de": TemplateStep("Hallo ({lang.label})")},
        EscalateStep("no branch", fields={"intent": "lang"}, message="{lang.label}?"),
        skill="lang",
    )
    wf = Workflow([route], skills={"lang": lang}, inbox=inbox)
    assert wf.run("de bitte").answer == "Hallo (de)"
    r = wf.run("hello")
    assert r.answer == "en?" and inbox.get(r.escalation.packet_id).intent == "en"
    after = Workflow(
        [RouteStep({"de": TemplateStep("Hallo")}, TemplateStep("Hi"), skill="lang"),
         MergeStep({"language": "{lang.label}"})],
        skills={"lang": lang},
    )  # fmt: skip
    assert after.run("fr merci").output.data == {"language": "fr"}
    # Its shape is the skill's: a field the skill does not fill is still an error.
    with pytest.raises(WorkflowError, match=r"\{lang.spans\} needs 'spans'"):
        Workflow([route, TemplateStep("{lang.spans}")], skills={"lang": lang})


@pytest.mark.parametrize(
    ("confidence", "expected"), [(0.5, "completed"), (0.5 - 1e-9, "escalated"), (0.51, "completed")]
)
def test_cascade_accepts_exactly_at_threshold(inbox, confidence, expected):
    wf = desk(
        inbox,
        threshold=0.5,
        skills={
            "intent": KeywordClassifier({"faq": confidence, "account": 0.8, "complaint": 0.9}),
            **_rest(),
        },
    )
    r = wf.run("faq question")
    assert r.status == expected
    tier = r.trace[0].children[0]
    assert tier.decision.threshold == 0.5
    assert tier.decision.confidence == pytest.approx(confidence)
    assert tier.decision.taken == ("accept" if expected == "completed" else "next")


@pytest.mark.parametrize(
    ("confidence", "why"),
    [
        (0.4999999, "intent confidence 0.4999999 < threshold 0.5"),
        (0.49999999999999994, "intent confidence 0.49999999999999994 < threshold 0.5"),
        (float("nan"), "intent confidence is NaN (not a number), so not ≥ threshold 0.5"),
    ],
)
def test_a_rejection_just_under_the_threshold_or_nan_reads_true(inbox, confidence, why):
    # "confidence 0.5 < threshold 0.5" (or "nan < 0.5") would read false to whoever
    # checks why a request went on to a person or a paid LLM.
    skills = {"intent": intent(faq=confidence, account=0.8, complaint=0.9), **_rest()}
    for r in [
        desk(inbox, skills=skills).run("faq?"),
        *desk(inbox, skills=skills).run_batch(["faq?"]),
    ]:
        assert r.status == "escalated"
        assert r.escalation.why == why
        assert r.trace[0].children[0].decision.taken == "next"


def _rest():
    return {
        "sentiment": Fixed(
            Prediction(label="negative", confidence=0.8), produces=frozenset({"label"})
        ),
        "entities": Tagger({"ORD-1": "ORDER"}),
        "summarizer": Echo(),
    }


def test_cascade_escalation_reports_why_and_keeps_the_guess(inbox):
    wf = desk(
        inbox,
        skills={
            "intent": KeywordClassifier({"faq": 0.3, "account": 0.8, "complaint": 0.9}),
            **_rest(),
        },
    )
    r = wf.run("faq maybe?")
    assert r.status == "escalated"
    assert r.escalation.reason == "intent unclear"
    assert r.escalation.why == "intent confidence 0.300 < threshold 0.5"
    packet = inbox.get(r.escalation.packet_id)
    assert packet.intent == "faq" and packet.intent_confidence == pytest.approx(0.3)
    assert len(r.trace) == 1, "nothing runs after an escalation"


def test_an_escalation_reports_the_decision_that_led_to_it_not_a_resolved_rejection(inbox):
    # The small tier is turned down and the big one answers; a route then escalates. The
    # escalation's why is the route's decision, not the small tier's settled rejection.
    small = KeywordClassifier({"faq": 0.2, "complaint": 0.2})
    skills = {"small": small, "intent": intent(), **_rest()}
    wf = Workflow(
        [
            CascadeStep([SkillStep("small", id="intent"), SkillStep("intent")], threshold=0.5),
            RouteStep(account_and_complaint(), EscalateStep("no route"), on="intent"),
        ],
        skills=skills,
        inbox=inbox,
    )
    r = wf.run("complaint: order ORD-1 never came")
    assert r.status == "escalated" and r.escalation.reason == "complaint"
    assert "branch 'complaint'" in r.escalation.why and "threshold" not in r.escalation.why
    assert inbox.get(r.escalation.packet_id).why == r.escalation.why
    # An unconditional escalation after the cascade answered: nothing was turned down.
    plain = Workflow(
        [
            CascadeStep([SkillStep("small", id="intent"), SkillStep("intent")], threshold=0.5),
            EscalateStep("always a person"),
        ],
        skills=skills,
        inbox=inbox,
    )
    done = plain.run("faq: opening hours")
    assert done.escalation.why == "the workflow escalates unconditionally here"
    batch = plain.run_batch(["faq: opening hours", "complaint: late"])
    assert {b.escalation.why for b in batch} == {"the workflow escalates unconditionally here"}


def test_cascade_abstention_goes_to_next_tier():
    skills = {
        "small": Fixed(Prediction(text="?", abstained="no_match", confidence=0.99)),
        "big": Fixed(Prediction(text="big answer", confidence=0.4)),
    }
    wf = Workflow(
        [CascadeStep([SkillStep("small"), SkillStep("big")], threshold=0.5)], skills=skills
    )
    r = wf.run("q")
    assert r.answer == "big answer"
    assert "abstained (no_match)" in r.trace[0].children[0].decision.why


def test_cascade_needs_one_threshold_per_tier_but_the_last():
    tiers = [SkillStep("a"), SkillStep("b"), SkillStep("c")]
    with pytest.raises(ConfigError, match="3 tiers need 2 thresholds"):
        CascadeStep(tiers, threshold=[0.5])
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        CascadeStep(tiers[:2], threshold=1.5)


def test_escalation_writes_exactly_one_packet_with_everything(inbox):
    wf = desk(inbox)
    r = wf.run("complaint: order ORD-1 never came, ana@x.io")
    assert r.status == "escalated" and r.answer == "A colleague will call you."
    assert inbox.count() == 1
    p = inbox.get(r.escalation.packet_id)
    assert p.text.startswith("complaint: order ORD-1")
    assert (p.intent, p.sentiment) == ("complaint", "negative")
    assert {"label": "ORDER", "text": "ORD-1"} in p.entities
    assert p.summary.startswith("summary of: complaint: order ORD-1")
    assert "negative" in p.summary and "ORDER: ORD-1" in p.summary
    assert p.reason == "complaint" and "branch 'complaint'" in p.why
    assert [t["kind"] for t in p.trace] == ["cascade", "route"]
    assert p.status == "open"


def test_escalation_key_makes_it_idempotent(inbox):
    wf = desk(inbox)
    a = wf.run("complaint one", key="k1")
    b = wf.run("complaint one", key="k1")
    assert a.escalation.packet_id == b.escalation.packet_id
    assert inbox.count() == 1


def test_escalation_to_a_declared_llm(inbox):
    llm = FakeBackend("Here is what I know.")
    wf = Workflow(
        [
            EscalateStep(
                "out of scope", to="big", prompt="Answer briefly: {input}", system="Be kind."
            )
        ],
        skills={},
        backends={"big": llm},
        inbox=inbox,
    )
    r = wf.run("what is the meaning of life")
    assert r.answer == "Here is what I know." and r.status == "escalated"
    assert r.escalation.to == "big" and r.escalation.packet_id is None
    assert [m.content for m in llm.requests[0].messages] == [
        "Be kind.",
        "Answer briefly: what is the meaning of life",
    ]
    assert r.usage.input_tokens == 11 and r.usage.output_tokens == 4
    assert inbox.count() == 0


def test_escalation_to_undeclared_llm_is_rejected():
    with pytest.raises(
        WorkflowError, match=r"steps\[0\].escalate.to: unknown escalation target 'gpt'"
    ):
        Workflow([EscalateStep("x", to="gpt")], skills={})


def test_an_llm_answer_cut_at_max_tokens_says_so(inbox):
    from fakes import FakeBackend as WordBackend

    llm = WordBackend(["one two three four five six"])
    wf = Workflow([EscalateStep("x", to="big", max_tokens=3)], skills={}, backends={"big": llm},
                  inbox=inbox)  # fmt: skip
    out = wf.run("hello").output
    assert out.text == "one two three" and out.data["finish_reason"] == "length"
    assert any("cut at max_tokens=3" in w and "raise max_tokens" in w for w in out.warnings)


def test_escalation_options_its_target_would_ignore_are_rejected():
    # `message:` is the reply while a person takes over; an LLM target answers itself.
    # `system:` is sent to an LLM; a person gets a packet. Neither may be ignored quietly.
    llm = FakeBackend("answer")
    with pytest.raises(
        WorkflowError, match=r"steps\[0\].escalate.message: .*LLM target 'big' answers itself"
    ):
        Workflow([EscalateStep("x", to="big", message="A colleague will call.")], skills={},
                 backends={"big": llm})  # fmt: skip
    with pytest.raises(WorkflowError, match=r"steps\[0\].escalate.system: .*sent to an LLM"):
        Workflow([EscalateStep("x", system="Be kind.")], skills={})


def test_parallel_runs_branches_at_once_and_joins():
    a = Fixed(Prediction(label="negative", confidence=0.8), sleep=0.3)
    b = Fixed(Prediction(label="ORG", confidence=0.6), sleep=0.3)
    wf = Workflow(
        [ParallelStep([SkillStep("a"), SkillStep("b")], id="both")], skills={"a": a, "b": b}
    )
    start = time.perf_counter()
    r = wf.run("text")
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"branches did not overlap ({elapsed:.2f} s)"
    assert a.threads[0] != b.threads[0]
    assert set(r.outputs) == {"a", "b", "both"}
    assert r.output.data["a"]["label"] == "negative" and r.output.data["b"]["label"] == "ORG"
    assert r.output.confidence == pytest.approx(0.6), "a join is as sure as its least sure branch"


def test_a_parallel_branch_that_hands_off_gives_the_run_its_reply(inbox):
    # The reply of the branch that hands off (its message, or the LLM's answer) is the
    # run's answer, as it is when the escalation is not inside a parallel.
    s = {"a": Fixed(Prediction(label="x", confidence=0.5)),
         "b": Fixed(Prediction(label="y", confidence=0.9))}  # fmt: skip
    reply = "A colleague will call."
    to_person = SequenceStep([SkillStep("b"), EscalateStep("angry", message=reply)])
    wf = Workflow([ParallelStep([SkillStep("a"), to_person], id="both")], skills=s, inbox=inbox)
    for r in [wf.run("text"), *wf.run_batch(["text"])]:
        assert r.status == "escalated" and r.answer == reply
        assert r.output.data["a"]["label"] == "x", "the joined outputs stay in data"
    llm = FakeBackend("LLM says hi")
    wf = Workflow([ParallelStep([SkillStep("a"), EscalateStep("big q", to="big")])],
                  skills=s, backends={"big": llm})  # fmt: skip
    for r in [wf.run("text"), *wf.run_batch(["text"])]:
        assert r.escalation is not None and r.escalation.to == "big"
        assert r.answer == "LLM says hi"


def test_a_failing_step_is_named_in_the_error(inbox):
    # A branch's error surfaces from another thread: it must still say which step failed,
    # in run, in run_batch, and on the command line's one error line.
    from slmstack.cli.app import _message
    from slmstack.errors import BackendError

    class Down(FakeBackend):
        def complete(self, request):
            raise BackendError("connection refused")

    s = {"a": Fixed(Prediction(label="x", confidence=0.5))}
    wf = Workflow(
        [ParallelStep([SkillStep("a"), EscalateStep("big q", to="big")], id="both")],
        skills=s,
        backends={"big": Down()},
    )
    for call in (lambda: wf.run("text"), lambda: wf.run_batch(["text", "more"])):
        with pytest.raises(BackendError, match="connection refused") as info:
            call()
        where = "in step 'escalate → big' at steps[0].parallel.steps[1]"
        assert info.value.__notes__ == [where], "named once, by the step that failed"
        assert _message(info.value) == f"connection refused ({where})"
    wf.close()


def test_parallel_branches_must_write_different_ids():
    s = {"a": Fixed(Prediction(label="x"))}
    with pytest.raises(WorkflowError, match="both write id 'a'"):
        Workflow([ParallelStep([SkillStep("a"), SkillStep("a")])], skills=s)


def test_a_second_step_may_not_replace_an_earlier_output():
    s = {"a": Fixed(Prediction(label="x")), "b": Fixed(Prediction(label="y"))}
    with pytest.raises(WorkflowError, match=r"steps\[1\].*id 'a' is already the output of"):
        Workflow([SkillStep("a"), SkillStep("b", id="a")], skills=s)
    after_route = RouteStep({"x": SkillStep("b", id="r")}, SkillStep("b", id="r"), on="a")
    with pytest.raises(WorkflowError, match="id 'r' is already the output of"):
        Workflow([SkillStep("a"), after_route, TemplateStep("t", id="r")], skills=s)
    # Allowed: tiers that answer in turn, a cascade named as its first tier, a block used twice.
    Workflow(
        [CascadeStep([SkillStep("a", id="x"), SkillStep("b", id="x")], threshold=0.5, id="x")],
        skills=s,
    )
    Workflow([BlockStep("twice"), BlockStep("twice")], skills=s, blocks={"twice": [SkillStep("a")]})


def test_template_asks_only_for_what_is_missing(inbox):
    wf = desk(inbox)
    r = wf.run("account: change e-mail to ana@x.io")
    assert r.answer == "Please send your order number."
    assert r.output.data["missing"] == ["ORDER"]
    r = wf.run("account: order ORD-1, ana@x.io")
    assert r.answer == "Thanks, we have ORDER: ORD-1 and EMAIL: ana@x.io."


def test_merge_keeps_raw_values_and_renders_mixed_ones():
    skills = {
        "sentiment": Fixed(
            Prediction(label="positive", confidence=0.9), produces=frozenset({"label"})
        ),
        "entities": Tagger({"Acme": "ORG"}),
    }
    wf = Workflow(
        [
            SkillStep("sentiment"),
            SkillStep("entities"),
            MergeStep(
                {"s": "{sentiment.label}", "e": "{entities.spans}", "c": "{sentiment.confidence}!"}
            ),
        ],
        skills=skills,
    )
    r = wf.run("Acme is great")
    assert r.output.data == {"s": "positive", "e": [{"label": "ORG", "text": "Acme"}], "c": "0.90!"}
    assert r.output.confidence == pytest.approx(0.9)


def test_blocks_are_reusable_and_cycles_are_rejected(inbox):
    wf = Workflow(
        [CascadeStep([SkillStep("intent"), BlockStep("hand_off")], threshold=0.99)],
        skills={"intent": intent()},
        blocks={"hand_off": [EscalateStep("unsure")]},
        inbox=inbox,
    )
    assert wf.run("faq").escalation.reason == "unsure"
    with pytest.raises(WorkflowError, match=r"cycle: block a → b → a"):
        Workflow(
            [BlockStep("a")],
            skills={},
            blocks={"a": [BlockStep("b")], "b": [BlockStep("a")]},
        )


def test_type_mismatch_between_steps_is_rejected():
    skills = {"summarizer": Echo(), "intent": intent()}
    with pytest.raises(
        WorkflowError, match="type mismatch: a route needs a label, but step 'summarizer' produces"
    ):
        Workflow(
            [
                SkillStep("summarizer"),
                RouteStep({"faq": TemplateStep("x")}, TemplateStep("y"), on="summarizer"),
            ],
            skills=skills,
        )
    with pytest.raises(WorkflowError, match=r"\{summarizer.spans\} needs 'spans'"):
        Workflow([SkillStep("summarizer"), TemplateStep("{summarizer.spans}")], skills=skills)


def test_route_branch_must_be_a_label_the_classifier_emits():
    with pytest.raises(
        WorkflowError, match=r"'complant' is not a label .* \(did you mean 'complaint'\?\)"
    ):
        Workflow(
            [
                SkillStep("intent"),
                RouteStep({"complant": TemplateStep("x")}, TemplateStep("y"), on="intent"),
            ],
            skills={"intent": intent()},
        )


def test_an_id_set_on_some_paths_only_is_reported_as_such_with_the_fix():
    # "no earlier step has id 'answer'" would be false: a step sets it, on one branch.
    s = {"intent": intent(), "faq": Echo()}
    route = RouteStep({"faq": SkillStep("faq", id="answer")}, TemplateStep("?"), on="intent")
    why = (
        r"id 'answer' may not be set here: the step at steps\[1\]\.route\.branches\.faq sets "
        r"it, but it runs on some paths only .* Read it inside that branch, or set the id on "
        "every path to here"
    )
    with pytest.raises(
        WorkflowError, match=rf"steps\[2\]\.template\.text: template refers to \{{answer\}} but {why}"
    ):
        Workflow([SkillStep("intent"), route, TemplateStep("got {answer}")], skills=s)
    late_tier = CascadeStep([SkillStep("intent"), SkillStep("faq", id="answer")], threshold=0.5)
    with pytest.raises(
        WorkflowError, match=r"steps\[1\]\.escalate\.summary: id 'answer' may not be set"
    ):
        Workflow([late_tier, EscalateStep("x", fields={"summary": "answer"})], skills=s)
    # An id no step sets keeps its did-you-mean.
    with pytest.raises(
        WorkflowError, match=r"no earlier step has id 'intnet' \(did you mean 'intent'\?\)"
    ):
        Workflow([SkillStep("intent"), TemplateStep("{intnet}")], skills=s)


def test_steps_after_an_escalation_are_unreachable():
    with pytest.raises(WorkflowError, match="unreachable"):
        Workflow([EscalateStep("x"), TemplateStep("never")], skills={})


def test_trace_records_latency_tokens_and_confidence(inbox):
    r = desk(inbox).run("faq: hours")
    tier = r.trace[0].children[0]
    assert tier.kind == "skill" and tier.name == "intent"
    assert tier.confidence == pytest.approx(0.9)
    assert tier.usage.input_tokens == 3 and r.usage.input_tokens == 3
    assert all(t.latency_ms >= 0 for root in r.trace for t in root.walk())
    assert r.trace[0].latency_ms >= tier.latency_ms
    d = r.to_dict()
    assert d["trace"][0]["children"][0]["decision"]["threshold"] == 0.5


def test_run_refuses_non_text():
    wf = Workflow([TemplateStep("x")], skills={})
    with pytest.raises(Exception, match="runs on a text"):
        wf.run(["a list"])  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_input_escalates_without_a_packet_or_a_label(inbox, text):
    wf = desk(inbox)
    r = wf.run(text)
    assert r.status == "escalated"
    assert r.escalation is not None and r.escalation.reason == "empty_input"
    assert r.escalation.packet_id is None
    assert r.output.label is None and r.output.abstained == "empty_input"
    assert inbox.list() == []
