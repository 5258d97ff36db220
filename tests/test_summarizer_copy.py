"""Summarizer: a summary that repeats its input is retried once, then abstains."""

from __future__ import annotations

import pytest

from fakes import FakeBackend
from slmstack import ConfigError, Summarizer
from slmstack.backends import CompletionRequest
from slmstack.skills._copying import check_copy, copied_share, restated_labels
from slmstack.workflows import SkillStep, Workflow

COMPLAINT = "I was charged twice for order ORD-10382 and nobody answers my emails. I am furious!"
GOOD = "The customer was billed two times and gets no reply; they are angry."


def echo(request: CompletionRequest) -> str:
    """A generator that hands back the text it was asked to summarise, as SmolLM2 does."""
    return request.messages[-1].content.split("\n\n", 1)[1]


def test_a_copy_is_retried_with_a_stricter_prompt_then_abstains():
    fake = FakeBackend(echo)
    pred = Summarizer(model=fake, max_sentences=3).fit([]).predict([COMPLAINT])[0]
    assert pred.abstained == "copied_input" and pred.text is None
    assert len(fake.requests) == 2
    first, retry = (r.messages for r in fake.requests)
    assert "Do not copy" not in first[0].content
    assert "Do not copy sentences or labels" in retry[0].content
    assert retry[-1].content.endswith(COMPLAINT) and len(retry) == 4  # a demonstration
    assert pred.data["copied_share"] == 1.0 and pred.data["attempts"] == 2
    assert pred.data["rejected"] == COMPLAINT
    assert "retried with a stricter prompt" in pred.warnings[0]
    assert "the retry repeated its input too (100% of its words" in pred.warnings[1]
    # both calls are counted
    assert pred.usage.output_tokens == 2 * len(COMPLAINT.split())


def test_a_copy_followed_by_a_real_summary_returns_the_summary():
    fake = FakeBackend([COMPLAINT, GOOD])
    pred = Summarizer(model=fake).fit([]).predict([COMPLAINT])[0]
    assert pred.abstained is None and pred.text == GOOD
    assert pred.data == {"copied_share": 0.0, "attempts": 2, "model": "fake"}
    assert len(pred.warnings) == 1 and "retried" in pred.warnings[0]


def test_a_good_summary_passes_with_one_call():
    fake = FakeBackend([GOOD])
    pred = Summarizer(model=fake).fit([]).predict([COMPLAINT])[0]
    assert pred.text == GOOD and pred.warnings == ()
    assert pred.data == {"copied_share": 0.0, "attempts": 1, "model": "fake"}
    assert len(fake.requests) == 1


def test_a_restated_prompt_label_is_a_copy_even_when_reworded():
    text = f"Customer complaint: {COMPLAINT}\nSentiment: negative"
    restated = "Customer complaint: billed two times. Sentiment: negative"
    assert copied_share(restated, text) < 0.8
    assert restated_labels(restated, text) == ["Customer complaint", "Sentiment"]
    fake = FakeBackend([restated, restated])
    pred = Summarizer(model=fake).fit([]).predict([text])[0]
    assert pred.abstained == "copied_input"
    assert pred.data["restated_labels"] == ["Customer complaint", "Sentiment"]
    assert "restates the input's 'Customer complaint:', 'Sentiment:'" in pred.warnings[-1]
    # a label the input does not have is not a restatement
    assert restated_labels("Summary: billed twice", text) == []


def test_the_limit_is_inclusive_on_a_borderline_summary():
    source = "one two three four five six seven eight nine ten"
    # 5 copied words (one 5-word run), then 3 new ones: 5/8 = 0.625
    summary = "one two three four five alpha beta gamma"
    assert copied_share(summary, source) == 0.625
    assert check_copy(summary, source, limit=0.625).copied
    assert not check_copy(summary, source, limit=0.63).copied
    # a 4-word run is not a copy: runs must be 5 words long
    assert copied_share("one two three four alpha beta gamma delta", source) == 0.0
    for limit, calls in ((0.6, 2), (0.7, 1)):
        fake = FakeBackend([summary, "Numbers are listed."])
        Summarizer(model=fake, max_copied=limit).fit([]).predict([source])
        assert len(fake.requests) == calls, limit


def test_short_summaries_and_the_switch():
    source = "Please refund me. I am furious about it."
    assert copied_share("I am furious", source) == 1.0  # 3 words, all a run of the input
    assert copied_share("Refund", source) == 0.0  # under 3 words: not judged
    fake = FakeBackend(echo)
    pred = Summarizer(model=fake, max_copied=None).fit([]).predict([source])[0]
    assert pred.text == source and len(fake.requests) == 1
    assert pred.data["copied_share"] == 1.0  # still measured and reported
    with pytest.raises(ConfigError, match=r"'max_copied' parameter .* Got 0 instead"):
        Summarizer(model=fake, max_copied=0).fit([])


def test_structured_mode_is_not_checked_for_copies():
    schema = {"type": "object", "properties": {"issue": {"type": "string"}}}
    fake = FakeBackend(['{"issue": "I was charged twice for order ORD-10382"}'])
    pred = Summarizer(model=fake, schema=schema).fit([]).predict([COMPLAINT])[0]
    assert pred.data == {"issue": "I was charged twice for order ORD-10382"}
    assert len(fake.requests) == 1


def test_the_workflow_trace_shows_the_abstention_and_why():
    summarizer = Summarizer(model=FakeBackend(echo)).fit([])
    wf = Workflow(
        [SkillStep("summarizer", id="summary", input="Customer complaint: {input}")],
        skills={"summarizer": summarizer},
    )
    result = wf.run(COMPLAINT)
    assert result.outputs["summary"].abstained == "copied_input"
    assert result.answer == "(abstained: copied_input)"
    step = result.to_dict()["trace"][0]
    assert step["output"]["abstained"] == "copied_input"
    assert any("retried with a stricter prompt" in w for w in step["output"]["warnings"])
    assert step["tokens"]["output"] > 0


def test_a_retry_that_copies_the_demonstration_is_a_copy_too():
    from slmstack.skills.summary_text import strict_shots

    demo_summary = strict_shots([])[0][1]
    fake = FakeBackend([COMPLAINT, demo_summary])
    pred = Summarizer(model=fake).fit([]).predict([COMPLAINT])[0]
    assert pred.abstained == "copied_input" and pred.data["rejected"] == demo_summary
    assert fake.requests[1].messages[2].content == demo_summary  # it was shown


def test_a_first_summary_that_copies_a_few_shot_demonstration_is_retried():
    # The retry was checked against the demonstrations it showed; the first attempt only
    # against the input, so a model parroting a few-shot summary was served as if it
    # summarised this text.
    from slmstack import Example

    demo = Example(
        "Hello, the parcel for order 5521 arrived with a cracked screen. Please help.",
        "The customer received order 5521 with a cracked screen and asks for help.",
    )
    fake = FakeBackend([demo.label, GOOD])
    pred = Summarizer(model=fake, few_shot=1).fit([demo]).predict([COMPLAINT])[0]
    assert len(fake.requests) == 2 and pred.text == GOOD
    assert "the summary repeated its input" in pred.warnings[0]
