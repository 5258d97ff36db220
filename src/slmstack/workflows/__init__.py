"""Workflows: stack skills into graphs (sequence, parallel, route, cascade, escalate).

Example:
    >>> from slmstack.workflows import load_workflow
    >>> wf = load_workflow("examples/support-desk/workflow.yaml")  # doctest: +SKIP
    >>> result = wf.run("My card was charged twice!")  # doctest: +SKIP
    >>> result.status, result.answer, result.route  # doctest: +SKIP
"""

from slmstack.errors import WorkflowError
from slmstack.workflows.base import Shape, SkillLike, Step, step_kinds
from slmstack.workflows.batch import BatchSummary, run_batch
from slmstack.workflows.engine import Workflow
from slmstack.workflows.inbox import Inbox
from slmstack.workflows.loader import check_workflow, load_workflow
from slmstack.workflows.packet import Packet
from slmstack.workflows.steps import (
    BlockStep,
    CascadeStep,
    EscalateStep,
    MergeStep,
    ParallelStep,
    RouteStep,
    SequenceStep,
    SkillStep,
    TemplateStep,
)
from slmstack.workflows.trace import Decision, Escalation, Result, StepTrace

__all__ = [
    "BatchSummary",
    "BlockStep",
    "CascadeStep",
    "Decision",
    "EscalateStep",
    "Escalation",
    "Inbox",
    "MergeStep",
    "Packet",
    "ParallelStep",
    "Result",
    "RouteStep",
    "SequenceStep",
    "Shape",
    "SkillLike",
    "SkillStep",
    "Step",
    "StepTrace",
    "TemplateStep",
    "Workflow",
    "WorkflowError",
    "check_workflow",
    "load_workflow",
    "run_batch",
    "step_kinds",
]
