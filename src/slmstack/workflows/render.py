"""Show a run's trace as a readable decision tree (rich ``Tree``)."""

from __future__ import annotations

from rich.markup import escape
from rich.tree import Tree

from slmstack.workflows.templates import readable
from slmstack.workflows.trace import Result, StepTrace


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(step: StepTrace) -> str:
    kind = "" if step.name == step.kind else f" [dim]{step.kind}[/]"
    parts = [f"[bold]{escape(step.name)}[/]{kind}"]
    out = step.output
    if out is not None and step.kind in ("skill", "template", "escalate"):
        shown = readable(out)
        if shown:
            parts.append(f"→ {escape(_short(shown))}")
        if out.abstained is not None and shown != f"(abstained: {out.abstained})":
            # a guess kept by a skill that declined (out of scope, another language)
            parts.append(f"[dim](abstained: {escape(out.abstained)})[/]")
        elif out.abstained is None and step.kind == "skill":
            parts.append(f"[dim](conf {out.confidence:.2f})[/]")
    if step.decision is not None:
        d = step.decision
        colour = "red" if d.taken in ("next", "human") or d.taken.startswith("escalate") else "cyan"
        parts.append(f"[{colour}]⇒ {escape(d.taken)}[/] [italic]{escape(d.why)}[/]")
    tokens = step.usage.input_tokens + step.usage.output_tokens
    parts.append(f"[dim]{step.latency_ms:.1f} ms" + (f", {tokens} tok" if tokens else "") + "[/]")
    return " ".join(parts)


def _add(tree: Tree, step: StepTrace) -> None:
    if step.kind == "sequence" and len(step.children) == 1 and step.decision is None:
        _add(tree, step.children[0])  # a one-step list adds nothing worth a level
        return
    node = tree.add(_label(step))
    for child in step.children:
        _add(node, child)


def trace_tree(result: Result) -> Tree:
    """A tree with one node per step: output, confidence, decision and why, time, tokens."""
    head = f"[bold]{escape(_short(result.input, 60))}[/]  [dim]{result.latency_ms:.1f} ms[/]"
    tree = Tree(head)
    for step in result.trace:
        _add(tree, step)
    end = f"[green]answer[/]: {escape(_short(result.answer, 90))}"
    if result.escalation is not None:
        e = result.escalation
        where = f" (packet #{e.packet_id})" if e.packet_id is not None else ""
        end = f"[red]escalated to {escape(e.to)}{where}[/]: {escape(e.reason)} — {escape(e.why)}"
    tree.add(end)
    return tree
