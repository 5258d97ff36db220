"""``slmstack train lora DATA.jsonl --base smollm2 --out DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slmstack.cli.common import cli_command, out, print_json


@cli_command
def lora(
    data: Annotated[Path, typer.Argument(help="JSONL (or CSV/TSV) of prompt/response pairs.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to save the adapter to.")],
    base: Annotated[str, typer.Option(help="Generator alias, GGUF file or HF model.")] = "smollm2",
    prompt_field: Annotated[str, typer.Option()] = "prompt",
    response_field: Annotated[str, typer.Option()] = "response",
    epochs: Annotated[int, typer.Option()] = 2,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    learning_rate: Annotated[float, typer.Option("--lr")] = 2e-4,
    rank: Annotated[int, typer.Option(help="LoRA rank r.")] = 8,
    alpha: Annotated[int, typer.Option(help="LoRA alpha (scale = alpha / rank).")] = 16,
    batch_size: Annotated[int, typer.Option()] = 8,
    max_length: Annotated[int, typer.Option(help="Prompt + response tokens per pair.")] = 256,
    val_fraction: Annotated[float, typer.Option()] = 0.1,
    val_data: Annotated[
        Path | None, typer.Option("--val", help="Validation pairs (instead of --val-fraction).")
    ] = None,
    bf16: Annotated[bool, typer.Option(help="bfloat16 autocast (AVX512-BF16/AMX CPUs).")] = False,
    system_prompt: Annotated[str, typer.Option(help="System message for every pair.")] = "",
    seed: Annotated[int, typer.Option()] = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the run summary as JSON.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace an adapter already in --out.")] = False,
) -> None:
    """Fine-tune a LoRA adapter for a small generator (CPU, minutes for a few hundred pairs)."""
    from slmstack.training.adapters import check_adapter_out
    from slmstack.training.lora import LoraSettings, read_pairs, train_lora

    check_adapter_out(out_dir, force=force)
    pairs = read_pairs(data, prompt_field=prompt_field, response_field=response_field)
    settings = LoraSettings(
        rank=rank,
        alpha=alpha,
        learning_rate=learning_rate,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        max_length=max_length,
        val_fraction=val_fraction,
        system_prompt=system_prompt,
        seed=seed,
        bf16=bf16,
    )
    val_pairs = None
    if val_data is not None:
        val_pairs = read_pairs(val_data, prompt_field=prompt_field, response_field=response_field)
    result = train_lora(pairs, out_dir, base=base, settings=settings, val_pairs=val_pairs)
    summary = {
        "out": str(out_dir),
        "pairs": len(pairs),
        "duplicates_dropped": result.duplicates_dropped,
        "steps": len(result.steps),
        "first_loss": round(result.steps[0]["loss"], 4) if result.steps else None,
        "last_loss": round(result.steps[-1]["loss"], 4) if result.steps else None,
        "val_loss_before": result.val_loss_before,
        "val_loss": result.val_loss,
        "best_epoch": result.best_epoch,
        "truncated_pairs": result.truncated_pairs,
        "seconds": round(result.seconds, 1),
    }
    if json_out:
        print_json(summary)
        return
    out.print(
        f"[green]saved[/] adapter {out_dir}  ({summary['steps']} steps, {summary['seconds']} s; "
        f"loss {summary['first_loss']} → {summary['last_loss']})"
    )
    if result.val_loss and result.best_epoch == 0:
        best = min(result.val_loss)
        out.print(f"[yellow]validation loss {result.val_loss_before:.4f}; no epoch improved "
                  f"it (best {best:.4f}): the adapter changes nothing[/]")  # fmt: skip
    elif result.val_loss:
        out.print(f"validation loss {result.val_loss_before:.4f} → {min(result.val_loss):.4f}")
    if result.truncated_pairs:
        out.print(
            f"[yellow]warning:[/] {result.truncated_pairs} pairs were longer than "
            f"{max_length} tokens and were cut; raise --max-length if their ends matter"
        )
