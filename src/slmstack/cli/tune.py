"""``slmstack tune cascade``: thresholds that meet a quality target at the least cost."""

from __future__ import annotations

import warnings
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from slmstack.cli.common import (
    check_html_target,
    cli_command,
    dollars,
    out,
    print_json,
    write_page,
)
from slmstack.costs.prices import to_nano
from slmstack.errors import ConfigError, DataWarning

app = typer.Typer(help="Tune a workflow against labelled data.", no_args_is_help=True)


def _usd(nano: float) -> str:
    """Dollars per 1M requests from mean nano-dollars per request."""
    return f"${Decimal(round(nano * 1_000_000)).scaleb(-9):,.2f}"


@app.command("cascade")
@cli_command
def cascade(
    workflow: Annotated[Path, typer.Argument(help="The workflow YAML file.")],
    data: Annotated[Path, typer.Option(help="Labelled validation texts (CSV, TSV, JSONL).")],
    target: Annotated[
        float,
        typer.Option(
            help="Quality to meet: accuracy in (0, 1], or with --relative a "
            "share of the best tier's accuracy."
        ),
    ],
    relative: Annotated[
        bool, typer.Option(help="Read --target as a share of the best tier.")
    ] = False,
    cascade_id: Annotated[
        str | None, typer.Option("--cascade", help="The cascade's id (when there are several).")
    ] = None,
    human_cost: Annotated[
        str | None, typer.Option(help="Dollars per hand-off, when the last tier is a person.")
    ] = None,
    text_column: Annotated[str, typer.Option()] = "text",
    label_column: Annotated[str, typer.Option()] = "label",
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write the cost-quality curve here.")
    ] = None,
    write: Annotated[
        bool, typer.Option(help="Write the chosen thresholds into WORKFLOW (comments kept).")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Measure each tier once, sweep the thresholds, and pick the cheapest that meets the target.

    Every tier's predictions are cached next to the workflow, so tuning again with another
    target costs nothing.
    """
    from slmstack.data.readers import read_examples
    from slmstack.data.validation import refuse_unusable_rows
    from slmstack.workflows import load_workflow
    from slmstack.workflows.tuning import accuracy_floor, sweep, write_thresholds
    from slmstack.workflows.tuning_measure import find_cascade, measure_tiers

    check_html_target(html_out)
    if not 0.0 < target <= 1.0:  # before any tier is measured (and paid for)
        hint = f" (for {target:g}%, pass {target / 100:g})" if 1 < target <= 100 else ""
        raise ConfigError(f"--target must be in (0, 1]; got {target}{hint}")
    human = None if human_cost is None else to_nano(dollars(human_cost, "--human-cost"))
    with load_workflow(workflow) as wf:  # closed after measuring: its pools, its ledger
        step = find_cascade(wf, cascade_id)
        # Validation data, not training data: one text of a label, or one label, is fine.
        examples = read_examples(data, text_column=text_column, label_column=label_column,
                                 validate=False)  # fmt: skip
        refuse_unusable_rows(examples, path=data)
        meter = wf.meter()
        tiers = measure_tiers(
            wf, step, [e.text for e in examples], [e.label for e in examples],
            cost_of=lambda name, p, s: meter.skill_cost(
                name, p.usage.input_tokens, p.usage.output_tokens, s),
            human_cost_nano_usd=human,
            cache=workflow.parent / ".slmstack-cache" / "tuning.json",
            cost_key=f"{meter.machine} {meter.prices!r}",  # every price, not just the version
        )  # fmt: skip
    result = sweep(tiers, target=target, relative=relative)
    summary: dict[str, Any] = {
        "workflow": str(workflow),
        "cascade": step.id,
        "texts": len(examples),
        "target_accuracy": round(result.target, 4),
        "tiers": [
            {
                "tier": t.name,
                "accuracy": round(t.accuracy, 4),
                "usd_per_1m": _usd(t.mean_cost),
            }
            for t in tiers
        ],
        "chosen": None,
        "prices": meter.prices.version,
        "scored_on": "the tuning data (no held-out split)",
    }
    if result.chosen is not None:
        c = result.chosen
        floor = accuracy_floor(c.quality, len(examples))
        # Off by more than 0.05 from the target: too few texts to tell the choice works.
        if floor < result.target - 0.05:
            warnings.warn(
                f"{len(examples)} texts are too few to show the target is met: their accuracy "
                f"{c.quality:.4f} is measured on the texts the thresholds were chosen on, and "
                f"on new texts it is, with 95% confidence, only at least {floor:.4f}. Add "
                "labelled texts (a few hundred), or read the choice as a rough one",
                DataWarning,
                stacklevel=2,
            )
        summary["chosen"] = {
            "thresholds": list(c.thresholds),  # as written: rounding moves texts
            "accuracy": round(c.quality, 4),
            "accuracy_at_least": round(floor, 4),  # on new texts, 95% confidence
            "usd_per_1m": _usd(c.mean_cost_nano_usd),
            "share_answered_by": {
                t.name: round(s, 4) for t, s in zip(tiers, c.share_answered_by, strict=True)
            },
        }
    if html_out is not None:
        write_page(html_out, _curve_page(result, summary))
        summary["html"] = str(html_out)
    if write:
        if result.chosen is None:
            raise ConfigError(
                f"no thresholds reach accuracy {result.target:.4f} on {data}; nothing written. "
                "Lower --target or add a stronger tier."
            )
        summary["written_to"] = write_thresholds(workflow, step.id, result.chosen.thresholds)
    if json_out:
        print_json(summary)
        return
    _print(summary)


def _print(summary: dict[str, Any]) -> None:
    from rich.table import Table

    name = summary["cascade"] or "(no id)"
    table = Table("tier", "accuracy alone", "per 1M requests", title=f"cascade {name}")
    for t in summary["tiers"]:
        table.add_row(t["tier"], f"{t['accuracy']:.4f}", t["usd_per_1m"])
    out.print(table)
    chosen = summary["chosen"]
    if chosen is None:
        out.print(f"[red]no thresholds reach accuracy {summary['target_accuracy']}[/]")
        return
    shares = ", ".join(f"{k} {v:.1%}" for k, v in chosen["share_answered_by"].items())
    out.print(
        f"thresholds {chosen['thresholds']}: accuracy {chosen['accuracy']:.4f} "
        f"(target {summary['target_accuracy']}) at {chosen['usd_per_1m']} per 1M requests; "
        f"answered by {shares}"
    )
    out.print(
        f"measured on the same {summary['texts']} texts the thresholds were chosen on (no "
        f"held-out split): on new texts, accuracy at least {chosen['accuracy_at_least']:.4f} "
        "with 95% confidence"
    )
    if "written_to" in summary:
        out.print(f"[green]written[/] to {summary['workflow']} ({summary['written_to']})")


def _curve_page(result: Any, summary: dict[str, Any]) -> str:
    from slmstack.costs.html import image, new_figure, page, png_base64, table

    fig = new_figure((8, 4.5), "The cost-quality curve")
    ax = fig.add_subplot()
    per_m = 1_000_000 / 1e9  # nano-dollars per request → dollars per 1M requests
    ax.scatter(
        [p.mean_cost_nano_usd * per_m for p in result.points],
        [p.quality for p in result.points],
        s=6,
        alpha=0.3,
        label="threshold settings",
    )
    ax.plot([p.mean_cost_nano_usd * per_m for p in result.front],
            [p.quality for p in result.front], marker="o", label="Pareto front")  # fmt: skip
    for t in result.tiers:
        ax.scatter([t.mean_cost * per_m], [t.accuracy], marker="s", label=f"{t.name} alone")
    if result.chosen is not None:
        ax.scatter([result.chosen.mean_cost_nano_usd * per_m], [result.chosen.quality],
                   marker="*", s=200, label="chosen")  # fmt: skip
    ax.axhline(result.target, linestyle="--", color="grey", label="target")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("US$ per 1M requests (symmetric log scale)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="lower right", fontsize=8)
    rows = [[t["tier"], f"{t['accuracy']:.4f}", t["usd_per_1m"]] for t in summary["tiers"]]
    chosen = summary["chosen"]
    text = (
        f"<p>Chosen: thresholds {chosen['thresholds']}, accuracy {chosen['accuracy']:.4f} at "
        f"{chosen['usd_per_1m']} per 1M requests.</p>"
        if chosen
        else "<p>No setting meets the target.</p>"
    )
    body = (
        f"<p>{summary['texts']} validation texts · target accuracy {summary['target_accuracy']}"
        f" · prices {summary['prices']}</p>{text}"
        + table(["tier", "accuracy alone", "per 1M requests"], rows)
        + image("Cost against quality", png_base64(fig))
    )
    return page(f"Cascade {summary['cascade']}: cost against quality", body)
