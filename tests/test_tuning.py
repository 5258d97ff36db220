"""Cascade tuning: exact simulation, the cheapest setting that meets the target, YAML kept."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from slmstack.errors import ConfigError
from slmstack.workflows.tuning import TierMeasure, pareto_front, simulate, sweep, write_thresholds


def tier(name, correct, confidence, cost, abstained=None):
    n = len(correct)
    return TierMeasure(
        name,
        np.array(correct, dtype=bool),
        np.array(confidence, dtype=float),
        np.zeros(n, dtype=bool) if abstained is None else np.array(abstained, dtype=bool),
        np.array(cost, dtype=np.int64),
    )


# The small model is right when it is confident; the LLM is always right and costs 1000x.
SMALL = tier("small", [1, 1, 1, 0, 0, 1], [0.9, 0.8, 0.7, 0.4, 0.3, 0.6], [1] * 6)
LLM = tier("llm", [1] * 6, [1.0] * 6, [1000] * 6)


def test_simulation_counts_every_visited_tier():
    point = simulate([SMALL, LLM], [0.5])
    # texts 3 and 4 (confidence 0.4, 0.3) go on to the LLM; all answers are right
    assert point.quality == 1.0
    assert point.mean_cost_nano_usd == pytest.approx((6 * 1 + 2 * 1000) / 6)
    assert point.share_answered_by == pytest.approx((4 / 6, 2 / 6))


def test_threshold_exactly_at_confidence_accepts():
    assert simulate([SMALL, LLM], [0.6]).share_answered_by[0] == pytest.approx(4 / 6)


def test_abstentions_never_accept():
    small = tier("small", [1, 1], [0.99, 0.99], [1, 1], abstained=[True, False])
    llm = tier("llm", [1, 1], [1, 1], [10, 10])
    assert simulate([small, llm], [0.0]).share_answered_by == (0.5, 0.5)


def test_sweep_picks_the_cheapest_setting_meeting_the_target():
    result = sweep([SMALL, LLM], target=1.0)
    assert result.chosen is not None and result.chosen.quality == 1.0
    # the cheapest perfect setting sends only the two unsure texts to the LLM
    assert result.chosen.mean_cost_nano_usd == pytest.approx((6 + 2000) / 6)
    relaxed = sweep([SMALL, LLM], target=0.8)
    assert relaxed.chosen.mean_cost_nano_usd < result.chosen.mean_cost_nano_usd


def test_relative_target_is_a_share_of_the_best_tier():
    result = sweep([SMALL, LLM], target=0.8, relative=True)
    assert result.target == pytest.approx(0.8)
    assert result.chosen.quality >= 0.8


def test_three_tiers_search_every_combination():
    mid = tier("mid", [1, 1, 1, 1, 0, 1], [0.95, 0.9, 0.9, 0.8, 0.2, 0.7], [50] * 6)
    result = sweep([SMALL, mid, LLM], target=1.0)
    best = result.chosen
    assert best is not None and best.quality == 1.0
    # small answers 4, mid answers text 3 (0.8), only text 4 reaches the LLM
    assert best.mean_cost_nano_usd == pytest.approx((6 + 2 * 50 + 1000) / 6)


def test_unreachable_target_chooses_nothing():
    weak = tier("weak", [0, 0], [0.9, 0.9], [1, 1])
    weak2 = tier("weak2", [0, 1], [0.9, 0.9], [2, 2])
    assert sweep([weak, weak2], target=0.9).chosen is None


def test_pareto_front_is_monotone():
    front = pareto_front(sweep([SMALL, LLM], target=0.5).points)
    costs = [p.mean_cost_nano_usd for p in front]
    qualities = [p.quality for p in front]
    assert costs == sorted(costs) and qualities == sorted(qualities)


def test_bad_inputs():
    with pytest.raises(ConfigError, match="at least 2 tiers"):
        sweep([SMALL], target=0.9)
    with pytest.raises(ConfigError, match=r"target must be in \(0, 1\]"):
        sweep([SMALL, LLM], target=1.5)


WORKFLOW = """\
# Support desk: the thresholds below are tuned by `slmstack tune cascade`.
name: desk
skills:
  intent: runs/intent   # the small model
steps:
  - cascade:
      id: triage
      threshold: 0.5    # hand-picked, to be tuned
      tiers:
        - skill: intent
        - escalate: {reason: unsure}
"""


def test_thresholds_are_written_into_the_yaml_keeping_comments(tmp_path):
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    where = write_thresholds(path, "triage", [0.7312])
    text = path.read_text()
    assert where == "steps[0].cascade"
    assert "threshold: 0.7312    # hand-picked" in text  # a number stays a number
    assert "# Support desk: the thresholds below" in text and "# the small model" in text
    with pytest.raises(ConfigError, match="expected one cascade with id 'nope'"):
        write_thresholds(path, "nope", [0.5])
    write_thresholds(path, "triage", [0.73121])  # as given: rounding would move texts
    assert "threshold: 0.73121    #" in path.read_text()
    before = path.read_text()
    with pytest.raises(ConfigError, match="never accepts tier 0.*nothing was written"):
        write_thresholds(path, "triage", [1.000001])
    assert path.read_text() == before


def test_an_llm_tier_is_refused_not_scored_as_a_person():
    from fakes import FakeBackend
    from slmstack.workflows import CascadeStep, EscalateStep, SkillStep, Workflow
    from slmstack.workflows.tuning_measure import find_cascade, measure_tiers
    from workflow_doubles import KeywordClassifier

    intent = KeywordClassifier({"refund": 0.9})
    wf = Workflow(
        [CascadeStep([SkillStep("intent"), EscalateStep("unsure", to="big")], threshold=0.5)],
        skills={"intent": intent},
        backends={"big": FakeBackend(["x"])},
    )
    with pytest.raises(ConfigError, match="escalates to the LLM 'big'.*to: human"):
        measure_tiers(wf, find_cascade(wf, None), ["refund please"], ["refund"],
                      cost_of=lambda *a: 0, human_cost_nano_usd=10)  # fmt: skip
    person = Workflow([CascadeStep([SkillStep("intent"), EscalateStep("unsure")], threshold=0.5)],
                      skills={"intent": intent})  # fmt: skip
    with pytest.raises(ConfigError, match="--human-cost"):
        measure_tiers(person, find_cascade(person, None), ["refund please"], ["refund"],
                      cost_of=lambda *a: 0)  # fmt: skip
    assert intent.calls == []  # refused before the tiers before it were measured (and paid)


def test_the_measure_cache_knows_the_skill_it_measured_and_the_prices(tmp_path):
    from slmstack.workflows import CascadeStep, EscalateStep, SkillStep, Workflow
    from slmstack.workflows.tuning_measure import find_cascade, measure_tiers
    from workflow_doubles import KeywordClassifier

    def measured(skill, cost_key="prices v1"):
        wf = Workflow(
            [CascadeStep([SkillStep("intent"), EscalateStep("unsure")], threshold=0.5)],
            skills={"intent": skill},
        )
        tiers = measure_tiers(wf, find_cascade(wf, None), ["refund please"], ["refund"],
                              cost_of=lambda *a: 7, human_cost_nano_usd=10,
                              cache=tmp_path / "tuning.json", cost_key=cost_key)  # fmt: skip
        return float(tiers[0].confidence[0])

    retrained = KeywordClassifier({"refund": 0.1})  # the same class, learned elsewhere
    retrained.provenance_ = "trained on other data"  # type: ignore[attr-defined]

    assert measured(KeywordClassifier({"refund": 0.9})) == 0.9
    assert measured(KeywordClassifier({"refund": 0.1})) == 0.9  # the same skill: cached
    assert measured(retrained) == 0.1  # another provenance: measured again
    before = (tmp_path / "tuning.json").read_text()
    measured(KeywordClassifier({"refund": 0.9}), cost_key="prices v2")
    assert (tmp_path / "tuning.json").read_text() != before  # other prices: a new entry


def test_a_measure_cut_short_goes_on_where_it_stopped_and_a_damaged_cache_is_named(tmp_path):
    from slmstack.errors import DataError
    from slmstack.workflows import CascadeStep, EscalateStep, SkillStep, Workflow
    from slmstack.workflows.tuning_measure import find_cascade, measure_tiers
    from workflow_doubles import KeywordClassifier

    class Flaky(KeywordClassifier):
        seen: ClassVar[list[str]] = []
        fail_at = 3

        def predict(self, texts):
            if len(Flaky.seen) >= Flaky.fail_at:
                raise ConnectionError("the paid tier went away")
            Flaky.seen.extend(texts)
            return super().predict(texts)

    wf = Workflow([CascadeStep([SkillStep("intent"), EscalateStep("unsure")], threshold=0.5)],
                  skills={"intent": Flaky({"refund": 0.9})})  # fmt: skip
    texts = [f"refund {i}" for i in range(6)]
    cache = tmp_path / "tuning.json"

    def measure():
        return measure_tiers(wf, find_cascade(wf, None), texts, ["refund"] * 6,
                             cost_of=lambda *a: 7, human_cost_nano_usd=10, cache=cache,
                             batch_size=1)  # fmt: skip

    with pytest.raises(ConnectionError):
        measure()
    Flaky.fail_at = 99
    tiers = measure()
    assert Flaky.seen == texts  # the three measured before the failure were not asked again
    assert len(tiers[0].correct) == 6
    cache.write_text('{"broken')
    with pytest.raises(DataError, match="tuning.json: the tuning cache is damaged.*delete it"):
        measure()


def test_several_cascades_without_ids_say_how_to_name_one():
    from slmstack.workflows import CascadeStep, EscalateStep, SkillStep, Workflow
    from slmstack.workflows.tuning_measure import find_cascade
    from workflow_doubles import KeywordClassifier

    wf = Workflow(
        [
            CascadeStep([SkillStep("intent"), EscalateStep("unsure")], threshold=0.5),
            CascadeStep([SkillStep("faq"), EscalateStep("no answer")], threshold=0.0, id="gate"),
        ],
        skills={"intent": KeywordClassifier({"refund": 0.9}), "faq": KeywordClassifier({})},
    )
    with pytest.raises(ConfigError) as info:
        find_cascade(wf, None)
    message = str(info.value)
    assert "None" not in message  # an id the user could not pass
    assert "'gate'" in message and "tiers intent, escalate → human" in message
    assert "`id:`" in message and "--cascade ID" in message


def test_grid_thresholds_are_short_and_split_the_confidences_as_tuned():
    # Exactly at a confidence: 0.6 is the shortest decimal that accepts 0.6 and not 0.59.
    small = tier("small", [1, 1, 0], [0.61, 0.6, 0.59], [1] * 3)
    llm = tier("llm", [1] * 3, [1.0] * 3, [100] * 3)
    assert sweep([small, llm], target=1.0).chosen.thresholds == (0.6,)
    # Hand-computed: SMALL is right from 0.6 up and wrong at 0.4 and below, so the cheapest
    # perfect setting accepts {0.9, 0.8, 0.7, 0.6}: 0.6, exactly at a confidence, is the
    # shortest threshold that does (0.5 ties it: the higher is kept).
    assert sweep([SMALL, LLM], target=1.0).chosen.thresholds == (0.6,)
    # Confidences closer together than 4 decimals keep the digits that tell them apart.
    close = tier("close", [1, 0], [0.9876543, 0.98765], [1, 1])
    llm2 = tier("llm", [1, 1], [1, 1], [50, 50])
    assert sweep([close, llm2], target=1.0).chosen.thresholds == (0.987654,)


def test_the_written_threshold_gives_what_the_tuning_reported(tmp_path):
    import yaml

    rng = np.random.default_rng(0)
    n = 3000
    conf = np.round(1 - rng.beta(1, 30, n), 6)  # dense near 1, as a softmax's are
    small = TierMeasure("small", rng.random(n) < conf, conf, np.zeros(n, bool),
                        np.ones(n, np.int64))  # fmt: skip
    human = tier("human", [1] * n, [1.0] * n, [1000] * n)
    chosen = sweep([small, human], target=0.985).chosen
    path = tmp_path / "wf.yaml"
    path.write_text(WORKFLOW)
    write_thresholds(path, "triage", chosen.thresholds)
    written = yaml.safe_load(path.read_text())["steps"][0]["cascade"]["threshold"]
    again = simulate([small, human], written if isinstance(written, list) else [written])
    assert (again.quality, again.mean_cost_nano_usd) == (chosen.quality, chosen.mean_cost_nano_usd)


def test_a_nan_confidence_does_not_empty_the_grid():
    small = tier("small", [1, 1, 0, 1], [0.9, float("nan"), 0.3, 0.8], [1] * 4)
    chosen = sweep([small, tier("llm", [1] * 4, [1] * 4, [100] * 4)], target=1.0).chosen
    assert chosen.share_answered_by[0] == pytest.approx(0.5)  # 0.9 and 0.8 accepted


def test_writing_thresholds_changes_nothing_but_their_text(tmp_path):
    from pathlib import Path

    desk = Path(__file__).parent.parent / "examples" / "support-desk" / "workflow.yaml"
    before = desk.read_text().replace(
        "    - cascade:\n        threshold: 0.5\n",
        "    - cascade:\n        id: desk\n        threshold: 0.5   # hand-picked\n",
    )
    assert "id: desk" in before  # long lines, `  - ` lists and comments, as users write them
    path = tmp_path / "workflow.yaml"
    path.write_text(before)
    path.chmod(0o640)
    assert write_thresholds(path, "desk", [0.7]) == "blocks.desk[0].cascade"
    assert path.read_text() == before.replace("threshold: 0.5   #", "threshold: 0.7   #")
    assert path.stat().st_mode & 0o777 == 0o640
    assert not list(tmp_path.glob(".*"))  # nothing left beside it

    flow = "steps:\r\n  - cascade: {id: a, threshold: 0.5, tiers: [x, y, z]}  # three\r\n"
    path.write_bytes(flow.encode())
    write_thresholds(path, "a", [0.25, 0.00005])
    assert path.read_bytes() == flow.replace("0.5,", "[0.25, 0.00005],").encode()

    block = "steps:\n  - cascade:\n      threshold:\n        - 0.5  # first\n        - 0.4\n"
    path.write_text(block + "      tiers: [x, y, z]\n")
    write_thresholds(path, None, [0.9, 0.125])
    assert path.read_text() == block.replace("0.5", "0.9").replace("0.4", "0.125") + (
        "      tiers: [x, y, z]\n"
    )


def test_a_tier_with_an_input_template_is_measured_on_what_it_sees_at_run_time():
    from slmstack.workflows import CascadeStep, EscalateStep, SkillStep, Workflow
    from slmstack.workflows.tuning_measure import find_cascade, measure_tiers
    from workflow_doubles import KeywordClassifier

    def measure(template):
        skill = KeywordClassifier({"refund": 0.9})
        cascade = CascadeStep([SkillStep("intent", input=template), EscalateStep("unsure")],
                              threshold=0.5)  # fmt: skip
        wf = Workflow([SkillStep("lang"), cascade],
                      skills={"intent": skill, "lang": KeywordClassifier({"en": 0.9})})  # fmt: skip
        measure_tiers(wf, find_cascade(wf, None), ["money back"], ["refund"],
                      cost_of=lambda *a: 0, human_cost_nano_usd=10)  # fmt: skip
        return skill.calls

    assert measure("Customer: {input} (refund?)") == ["Customer: money back (refund?)"]
    with pytest.raises(ConfigError, match=r"tier 0 .*\{lang.label\}.*earlier steps"):
        measure("{lang.label}: {input}")
