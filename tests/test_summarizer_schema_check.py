"""A structured summary must be the record its schema asks for, or the skill abstains."""

from __future__ import annotations

from slmstack.skills._record_check import record_problems
from slmstack.skills.summary_text import SUPPORT_TICKET_SCHEMA as SCHEMA

GOOD = {"issue": "broken jar", "product": "blender", "sentiment": "negative",
        "requested_action": "a refund"}  # fmt: skip


def test_a_record_that_breaks_the_schema_is_named_for_what_it_breaks():
    assert record_problems(SCHEMA, GOOD) == []
    assert record_problems(SCHEMA, {"issue": "broken jar"}) == [
        "'product' is missing", "'sentiment' is missing", "'requested_action' is missing"]  # fmt: skip
    assert record_problems(SCHEMA, {**GOOD, "issue": 5, "sentiment": "furious"}) == [
        "'issue' is a int, not string",
        "'sentiment' is 'furious', not one of ['positive', 'neutral', 'negative']",
    ]
    assert record_problems(SCHEMA, [1, 2]) == ["the output is a list, not a JSON object"]


def test_demonstrations_leave_room_for_the_text():
    from slmstack.skills.summary_text import cut_to_tokens, fit_shots

    def words(text: str) -> int:
        return len(text.split())

    long = [("w " * 400, "s " * 10)] * 3  # 410 tokens each, in a 1,000-token window
    kept, warning = fit_shots(words, long, 1000)
    assert len(kept) == 1 and warning and "kept 1 of 3 demonstrations" in warning
    assert fit_shots(words, long[:1], 1000) == (long[:1], None)
    text, cut = cut_to_tokens(words, "w " * 800, 1000 - 410)
    assert words(text) <= 590 and cut and "input truncated: 800 tokens" in cut


def test_a_record_a_fallback_answered_says_so_and_is_counted_under_its_model():
    import json

    from fakes import FakeBackend
    from slmstack import Summarizer
    from slmstack.backends import Completion
    from slmstack.types import Usage

    answer = Completion(json.dumps(GOOD), "backup-llm", Usage(40, 12),
                        failed_over=("dear-llm at https://a.test/v1 answered HTTP 503",))  # fmt: skip
    pred = Summarizer(model=FakeBackend([answer]), schema=SCHEMA).fit([]).predict(["x y"])[0]
    assert pred.data == GOOD  # the record is the data: the model is in the usage
    assert pred.usage.by_model == (("backup-llm", 40, 12),)
    assert pred.warnings == ("failed over: dear-llm at https://a.test/v1 answered HTTP 503",)
