"""``comply``: check the input against a rule pack; a flagged document can go to a person.

YAML::

    skills:
      checker: models/nda-checker          # a ComplianceChecker (for `hypothesis:` rules)
      invoice: models/invoice-fields       # a FieldExtractor (for `check:` rules)
    steps:
      - skill: invoice                     # its output's data["fields"] feeds field rules
      - comply:
          pack: payment-terms              # a shipped pack or a YAML path
          use: checker                     # needed when the pack has text rules
          fields: invoice                  # needed when the pack has field rules
          escalate_on: [violated]          # flags that hand the document to a person
          reason: breaks the payment policy
          id: compliance

The output's ``label`` is the worst flag (``violated``, ``missing``, ``needs_review`` or
``ok``), ``spans`` the evidence, ``text`` a summary of the rules that are not ok, and
``data["rules"]`` each rule's verdict, flag, confidence and evidence. When the worst
flag is in ``escalate_on``, the run ends with a hand-off packet for the inbox, as an
``escalate`` step would write it: the intent and the sentiment (the steps with ids
``intent`` and ``sentiment``, when the workflow has them), the summary, and each flagged
rule's evidence (rule, flag, offsets and text) as the packet's entities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field

from slmstack.compliance.fields import check_fields, combine, field_record
from slmstack.compliance.rules import RulePack, load_pack
from slmstack.errors import SkillError
from slmstack.types import Prediction
from slmstack.workflows.base import (
    At,
    Builder,
    CheckEnv,
    HandOff,
    RunContext,
    Shape,
    Step,
    StepSpec,
    step_kinds,
)
from slmstack.workflows.steps.escalate import packet_fields
from slmstack.workflows.trace import Decision, StepTrace


@runtime_checkable
class PackChecker(Protocol):
    """What the step asks of its skill: a ComplianceChecker's ``check(texts, pack)``."""

    def check(self, texts: Sequence[str], pack: RulePack) -> list[Prediction]:
        """One result per text against ``pack``'s text rules."""
        ...


FlagName = Literal["violated", "missing", "needs_review"]
_OUTPUT = frozenset({"label", "confidence", "spans", "text", "data", "abstained"})


class ComplySpec(StepSpec):
    """YAML body of a ``comply`` step."""

    pack: str
    use: str | None = None  # the ComplianceChecker skill, for text rules
    fields: str | None = None  # id of an earlier step with data["fields"], for field rules
    escalate_on: list[FlagName] = Field(default_factory=list)
    reason: str = "compliance check failed"
    id: str | None = None


@step_kinds.register("comply")
class ComplyStep(Step):
    """Flag the input against a pack, with evidence; escalate on chosen flags."""

    kind = "comply"
    Spec = ComplySpec

    def __init__(
        self,
        pack: RulePack,
        *,
        use: str | None = None,
        fields: str | None = None,
        escalate_on: Sequence[str] = (),
        reason: str = "compliance check failed",
        id: str | None = None,
    ):
        self.pack = pack
        self.use = use
        self.fields = fields
        self.escalate_on = tuple(escalate_on)
        self.reason = reason
        self.id = id

    @classmethod
    def from_spec(cls, spec: Any, build: Builder, at: At) -> Step:
        """Build from a :class:`ComplySpec` (the pack is read and validated here)."""
        return cls(load_pack(spec.pack), use=spec.use, fields=spec.fields,
                   escalate_on=spec.escalate_on, reason=spec.reason, id=spec.id)  # fmt: skip

    @property
    def name(self) -> str:
        """``comply <pack>`` or the id."""
        return self.id or f"comply {self.pack.name}"

    def check(self, env: CheckEnv, path: str) -> Shape:
        """Text rules need ``use:``; field rules need ``fields:`` naming an earlier step."""
        if self.pack.nli_rules and self.use is None:
            env.error(self.at(path, "use"),
                      f"pack {self.pack.name!r} has {len(self.pack.nli_rules)} text rules; name "
                      "the ComplianceChecker skill that judges them with `use: SKILL`")  # fmt: skip
        skill = env.check_skill(self.use, self.at(path, "use")) if self.use is not None else None
        kind = getattr(skill, "skill_name", None)
        if skill is not None and kind != "slmstack.ComplianceChecker.v1":
            env.error(
                self.at(path, "use"),
                f"skill {self.use!r} is a {kind or type(skill).__name__}, "
                "not a ComplianceChecker (train one with `slmstack train comply`)",
            )
        if self.pack.field_rules:
            if self.fields is None:
                env.error(self.at(path, "fields"),
                          f"pack {self.pack.name!r} has field rules; name the earlier step whose "
                          "output has the extracted fields with `fields: STEP_ID`")  # fmt: skip
            elif self.fields not in env.defined:
                env.error(self.at(path, "fields"), env.no_id(self.fields))
            else:
                self._check_fields(env, self.at(path, "fields"), self.fields)
        return self.define(env, Shape(_OUTPUT), path)

    def _check_fields(self, env: CheckEnv, at: str, step_id: str) -> None:
        """The step ``step_id`` must give the fields the pack's rules read, where it can be told.

        A rule reading a field the extractor does not extract would be ``missing`` on every
        document and never fire.
        """
        given = env.defined[step_id].fields
        if given is not None and "data" not in given:
            env.error(at, f"step {step_id!r} gives no data[\"fields\"] (it fills "
                          f"{', '.join(sorted(given))}), so every field rule of pack "
                          f"{self.pack.name!r} would be missing; name the step of a "
                          "FieldExtractor")  # fmt: skip
            return
        owner = env.owners.get(step_id)
        use = getattr(owner[0], "use", None) if owner is not None else None
        specs = getattr(env.skills.get(use), "specs_", None) if isinstance(use, str) else None
        if specs is None:
            return  # not a skill step, or a skill that does not list its fields
        have = [str(getattr(s, "name", s)) for s in specs]
        for rule in self.pack.field_rules:
            for name in [*rule.fields, *([rule.total] if rule.total else [])]:
                if name not in have:
                    env.error(at, f"rule {rule.id!r} of pack {self.pack.name!r} reads {name!r}, "
                                  f"which skill {use!r} (step {step_id!r}) does not extract "
                                  f"(it extracts {', '.join(have)}); rename the field in the "
                                  "pack, or train the extractor with it in its schema")  # fmt: skip

    def execute(self, ctx: RunContext, path: str) -> StepTrace:
        """Check one input."""
        return self.execute_batch([ctx], path)[0]

    def execute_batch(self, ctxs: Sequence[RunContext], path: str) -> list[StepTrace]:
        """One checker call for the batch; field rules on each run's record."""
        if not ctxs:
            return []
        texts: list[Prediction | None] = [None] * len(ctxs)
        if self.pack.nli_rules and self.use is not None:
            checker = ctxs[0].runtime.skills[self.use]
            if not isinstance(checker, PackChecker):
                raise SkillError(
                    f"skill {self.use!r} is a {type(checker).__name__}, not a "
                    "ComplianceChecker; train one with `slmstack train comply`"
                )
            preds = checker.check([c.input for c in ctxs], self.pack)
            if len(preds) != len(ctxs):
                raise SkillError(f"skill {self.use!r} returned {len(preds)} predictions for "
                                 f"{len(ctxs)} texts")  # fmt: skip
            texts = list(preds)
        return [self._finish(ctx, path, pred) for ctx, pred in zip(ctxs, texts, strict=True)]

    def _finish(self, ctx: RunContext, path: str, text_result: Prediction | None) -> StepTrace:
        record: dict[str, Any] = {}
        if self.fields is not None and self.fields in ctx.outputs:
            record = field_record(ctx.outputs[self.fields])
        result = combine(self.pack, text_result, check_fields(self.pack, record))
        decision = None
        if result.label in self.escalate_on:
            why = f"worst flag {result.label}: " + ", ".join(
                f"{r['id']} {r['flag']}" for r in result.data["rules"] if r["flag"] != "ok"
            )
            packet = self._packet(ctx, result, why)
            ctx.hand_off = HandOff("human", self.reason, why, packet, fill=_found)
            decision = Decision("human", f"{self.reason}: {why}", label=result.label,
                                confidence=result.confidence)  # fmt: skip
            ctx.decision = decision
        return StepTrace(path, self.kind, self.name, output=result, decision=decision,
                         usage=result.usage)  # fmt: skip

    def _packet(self, ctx: RunContext, result: Prediction, why: str) -> Any:
        from slmstack.workflows.packet import Packet

        evidence = tuple(
            {"label": f"{r['id']} ({r['flag']})", "text": e["text"],
             "start": str(e["start"]), "end": str(e["end"])}
            for r in result.data["rules"] if r["flag"] != "ok"
            for e in (r.get("evidence") or r.get("nearest") or ())
        )  # fmt: skip
        return Packet(workflow=ctx.runtime.workflow, text=ctx.input, reason=self.reason,
                      why=why, entities=evidence, summary=result.text,
                      **_found(ctx.outputs))  # fmt: skip


def _found(outputs: Mapping[str, Prediction]) -> dict[str, Any]:
    """The intent and sentiment for the packet, from the steps with those ids."""
    return packet_fields(outputs, {"intent": "intent", "sentiment": "sentiment"})
