"""Built-in step kinds; importing this package registers them in ``step_kinds``."""

from slmstack.workflows.steps.block import BlockStep
from slmstack.workflows.steps.cascade import CascadeStep
from slmstack.workflows.steps.comply import ComplyStep
from slmstack.workflows.steps.escalate import EscalateStep
from slmstack.workflows.steps.merge import MergeStep
from slmstack.workflows.steps.parallel import ParallelStep
from slmstack.workflows.steps.route import RouteStep
from slmstack.workflows.steps.sequence import SequenceStep
from slmstack.workflows.steps.skill import SkillStep
from slmstack.workflows.steps.template import TemplateStep

__all__ = [
    "BlockStep",
    "CascadeStep",
    "ComplyStep",
    "EscalateStep",
    "MergeStep",
    "ParallelStep",
    "RouteStep",
    "SequenceStep",
    "SkillStep",
    "TemplateStep",
]
