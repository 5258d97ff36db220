"""Training pairs for a Summarizer adapter are in the exact messages the skill sends."""

from __future__ import annotations

from fakes import FakeBackend
from slmstack import Summarizer
from slmstack.skills.summary_text import lora_pairs

DIALOGUE = "#Person1#: Can I pay by card?\n#Person2#: Yes, we take every card."
INSTRUCTIONS = "Refer to the speakers as #Person1# and #Person2#."


def test_lora_pairs_match_the_prompt_the_summarizer_sends():
    fake = FakeBackend(["#Person2# says cards are fine."])
    skill = Summarizer(model=fake, max_sentences=3, instructions=INSTRUCTIONS, max_copied=None)
    skill.fit([]).predict([DIALOGUE])
    sent = fake.requests[0].messages
    system, pairs = lora_pairs(
        [(DIALOGUE, "They talk about cards.")], max_sentences=3, instructions=INSTRUCTIONS
    )
    assert [(m.role, m.content) for m in sent] == [("system", system), ("user", pairs[0][0])]
    assert pairs[0][1] == "They talk about cards."
    assert INSTRUCTIONS in system and DIALOGUE in pairs[0][0]


def test_lora_pairs_follow_the_sentence_bound():
    one, _ = lora_pairs([("a text", "a summary")], max_sentences=1)
    three, _ = lora_pairs([("a text", "a summary")], max_sentences=3)
    assert "one sentence" in one and "at most 3 sentences" in three
