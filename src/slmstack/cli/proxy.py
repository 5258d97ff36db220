"""``slmstack proxy --upstream URL``: the recording proxy; ``keygen`` and ``unmask``."""

from __future__ import annotations

import difflib
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from slmstack.cli.common import cli_command, err, print_json
from slmstack.cli.serve import LOG_LEVELS, check_port
from slmstack.errors import ConfigError, MissingDependencyError

app = typer.Typer(
    help="An OpenAI-compatible proxy that records an app's LLM calls (and its tools).",
    invoke_without_command=True,
)

_KEY_ENV = "SLMSTACK_MASK_KEY"


@app.callback()
@cli_command
def proxy(
    ctx: typer.Context,
    upstream: Annotated[
        str | None,
        typer.Option(help="The LLM's OpenAI base URL (https://api.openai.com/v1)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8080,
    ledger: Annotated[
        str,
        typer.Option(
            help="Database URL for the ledger and the traffic (sqlite:///PATH, "
            "postgresql+psycopg://...) or a SQLite file."
        ),
    ] = "sqlite:///slmstack-proxy.db",
    upstream_key_env: Annotated[
        str | None,
        typer.Option(help="Send this variable's key upstream instead of the client's."),
    ] = None,
    mask: Annotated[
        bool, typer.Option("--mask", help="Mask personal data before anything is stored.")
    ] = False,
    mask_key_env: Annotated[
        str, typer.Option(help="The variable holding the masking key (slmstack proxy keygen).")
    ] = _KEY_ENV,
    mask_tagger: Annotated[
        Path | None, typer.Option(help="An EntityTagger folder: its PER spans are masked too.")
    ] = None,
    prices: Annotated[
        Path | None, typer.Option(help="Your price table (YAML) over the packaged one.")
    ] = None,
    price_as: Annotated[
        str | None, typer.Option(help="Price every call as this model (e.g. gpt-4).")
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(help="Count tokens of streamed answers that carry no usage with this."),
    ] = None,
    tasks: Annotated[
        Path | None,
        typer.Option(help="Tasks from `slmstack discover --json`, for --shadow."),
    ] = None,
    shadow: Annotated[
        list[str] | None,
        typer.Option(
            help="TASK_ID=SKILL_DIR: also ask this student on the task's calls "
            "(the LLM still answers); repeat for more tasks."
        ),
    ] = None,
    audit_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of a promoted task's student answers also checked with the LLM.",
        ),
    ] = 0.05,
    refresh_s: Annotated[
        float, typer.Option(min=0.001, help="Seconds between reads of the promotion decisions.")
    ] = 5.0,
    demote_window: Annotated[
        int, typer.Option(min=1, help="A promoted task's latest audits weighed for demotion.")
    ] = 200,
    demote_min_n: Annotated[
        int, typer.Option(min=1, help="Audits needed before a task can be demoted.")
    ] = 30,
    log_level: Annotated[
        str, typer.Option(help=f"uvicorn's log level: {', '.join(LOG_LEVELS)}.")
    ] = "warning",
) -> None:
    """Forward /v1/... to --upstream unchanged; record each chat call in the ledger.

    Point the app's OpenAI client at http://HOST:PORT/v1. Each chat completion (streamed
    or not) is recorded, off the request path: prompt, answer, tokens, latency, cost. A
    task promoted with `slmstack promote` (and shadowed with --shadow) is answered by its
    student when it is confident enough, audited, and demoted when the audits disagree.
    """
    if ctx.invoked_subcommand is not None:
        return
    if upstream is None:
        raise ConfigError(
            "pass the LLM to forward to: slmstack proxy --upstream https://api.openai.com/v1"
        )
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}; got {log_level!r}")
    try:
        import uvicorn

        from slmstack.proxy import ProxyConfig, create_proxy_app
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "uvicorn", "proxy", "slmstack proxy") from exc
    from pydantic import ValidationError

    try:
        config = ProxyConfig(
            upstream=upstream, ledger=ledger if "://" in ledger else f"sqlite:///{ledger}",
            upstream_key_env=upstream_key_env, mask=mask, mask_key_env=mask_key_env,
            mask_tagger=mask_tagger, prices=prices, price_as=price_as, tokenizer=tokenizer,
            tasks=tasks, shadow=_pairs(shadow or []), audit_rate=audit_rate,
            refresh_s=refresh_s, demote_window=demote_window, demote_min_n=demote_min_n,
        )  # fmt: skip
    except ValidationError as exc:  # each bad option, by its flag
        raise ConfigError("; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )) from None  # fmt: skip
    check_port(host, port)  # before the shadow students load, not after
    proxy_app = create_proxy_app(config)  # every config error now, before listening
    masking = f", masking with ${mask_key_env}" if mask else ""
    err.print(
        f"proxy: http://{host}:{port}/v1 -> {config.upstream}; recording to "
        f"{_shown(config.ledger)}{masking}",
        highlight=False,
    )
    if proxy_app.serving is not None:
        served = ", ".join(
            f"{t} (confidence >= {v:.3f})" for t, v in proxy_app.serving.served().items()
        )
        err.print(f"served by students: {served or 'none yet'}", highlight=False)
    uvicorn.run(proxy_app, host=host, port=port, log_level=log_level, lifespan="on")


def _pairs(values: list[str]) -> dict[str, Path]:
    pairs = {}
    for value in values:
        task, sep, folder = value.partition("=")
        if not sep or not task or not folder:
            raise ConfigError(f"--shadow takes TASK_ID=SKILL_DIR; got {value!r}")
        pairs[task] = Path(folder)
    return pairs


def _shown(url: str) -> str:
    from slmstack.costs.ledger import shown_url

    return shown_url(url)


@app.command("keygen")
@cli_command
def keygen() -> None:
    """Print a new masking key; keep it safe and export it as $SLMSTACK_MASK_KEY."""
    from slmstack.proxy import generate_key

    sys.stdout.write(generate_key() + "\n")


@app.command("unmask")
@cli_command
def unmask(
    text: Annotated[
        str | None, typer.Argument(help="Masked text; read from stdin when left out.")
    ] = None,
    ledger: Annotated[
        str | None, typer.Option(help="Print a recorded call unmasked, from this database.")
    ] = None,
    request_id: Annotated[
        str | None, typer.Option(help="The recorded call to print (with --ledger).")
    ] = None,
    key_env: Annotated[str, typer.Option(help="The variable holding the masking key.")] = _KEY_ENV,
) -> None:
    """Decrypt the <KIND:token> values of masked text, or of a recorded call."""
    from slmstack.proxy import TrafficStore, key_from_env
    from slmstack.proxy import unmask as reveal

    if ledger is None and request_id is not None:
        raise ConfigError("--request-id reads a recorded call: add --ledger URL (the proxy's)")
    if ledger is not None and text is not None:
        raise ConfigError("pass TEXT to unmask, or --ledger URL --request-id ID; not both")
    key = key_from_env(key_env)
    if ledger is None:
        sys.stdout.write(reveal(text if text is not None else sys.stdin.read(), key))
        return
    if request_id is None:
        raise ConfigError("--ledger prints one recorded call: add --request-id ID")
    url = ledger if "://" in ledger else f"sqlite:///{ledger}"
    rows = TrafficStore(url, create=False).rows(request_id=request_id)
    if not rows:
        raise ConfigError(f"no call {request_id!r} is recorded in {_shown(url)}")
    row = rows[0]
    print_json({"request_id": row.request_id, "model": row.model, "system": reveal(row.system, key),
                "user": reveal(row.user, key), "response": reveal(row.response, key)})  # fmt: skip


@cli_command
def promote(
    task: Annotated[str, typer.Option(help="The task id (from slmstack discover).")],
    ledger: Annotated[
        str, typer.Option(help="The proxy's database (URL or SQLite file).")
    ] = "sqlite:///slmstack-proxy.db",
    min_n: Annotated[int, typer.Option(min=1, help="Shadowed calls the gate needs.")] = 200,
    min_n_above: Annotated[
        int, typer.Option(min=1, help="Shadowed calls the gate needs above the threshold.")
    ] = 50,
    min_agreement: Annotated[
        float, typer.Option(help="The agreement the lower bound must reach.")
    ] = 0.9,
    confidence: Annotated[float, typer.Option(help="One-sided confidence of the bound.")] = 0.95,
    window: Annotated[int, typer.Option(help="The latest shadowed calls weighed.")] = 2000,
    demote: Annotated[
        bool, typer.Option("--demote", help="Send the task back to the LLM (and shadowing).")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """Move a task to its student when shadow agreement passes a confidence-bound gate.

    The cascade threshold is tuned too: the student answers the calls it is at least that
    confident on, the LLM the rest. A running proxy reads the decision within --refresh-s.
    """
    from slmstack.proxy.promote import ShadowStore
    from slmstack.proxy.promote import demote as send_back
    from slmstack.proxy.promote import promote as decide

    url = ledger if "://" in ledger else f"sqlite:///{ledger}"
    store = ShadowStore(url, create=False)
    known = store.task_ids()
    if task not in known:
        if not known:
            raise ConfigError(
                f"{_shown(url)} holds no shadow comparisons yet: run the proxy with the task's "
                "student beside the LLM first (slmstack proxy --tasks tasks.json --shadow "
                f"{task}=DIR), then promote"
            )
        close = difflib.get_close_matches(task, sorted(known), n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"no task {task!r} was shadowed or promoted in {_shown(url)}{guess}; known tasks: "
            f"{', '.join(sorted(known))}"
        )
    if demote:
        decision = send_back(store, task, "by the operator (slmstack promote --demote)")
    else:
        decision = decide(store, task, min_n=min_n, min_n_above=min_n_above,
                          min_agreement=min_agreement, confidence=confidence,
                          window=window)  # fmt: skip
    if json_out:
        shown = asdict(decision)
        shown["at"] = decision.at.isoformat()
        print_json(shown)
    else:
        verdict = "promoted" if decision.promoted else "not promoted"
        if decision.promoted:
            verdict += (f" (threshold {decision.threshold:.3f}, coverage "
                        f"{decision.coverage:.1%})")  # fmt: skip
        err.print(f"{task}: {verdict}: {decision.reason}", highlight=False)
    if not decision.promoted and not demote:
        raise typer.Exit(1)
