"""Fine-tuned SLM against a local stand-in "LLM" on BANKING77: accuracy, latency and money.

The "LLM" is Qwen2.5-Coder-1.5B-Instruct (GGUF, Q4_K_M), the largest local generative
model, served by llama-cpp-python's OpenAI-compatible server and reached through
``LLMClassifier(runtime="openai")``: the 77 labels (with descriptions) in the system
prompt, the ``k`` training examples nearest to the query (MiniLM cosine) as earlier chat
turns, most similar last, and the answer constrained by a JSON schema whose ``label`` is
an enum of the 77 labels, one greedy call per query (``confidence_method="greedy"``: no
log-probabilities, which llama-cpp-python computes over Qwen's 152k-token vocabulary in
Python, about half of each call's time in an earlier run). The prompt variant and ``k``
are chosen on a validation sample held out of the *training* set (and out of the
demonstration pool); the test sample is scored once, with the chosen setting.

The SLMs are ``TextClassifier(strategy="finetune")`` and ``TextClassifier(strategy="head")``
on all-MiniLM-L6-v2, trained on the full training set. Trivial baselines (majority class,
TF-IDF nearest neighbour) and the LLM's own top retrieved demonstration (embedding 1-NN)
are scored on the same test sample.

Costs per 1M requests, exact (``Decimal``), from the packaged price table: the LLM's
prompts at GPT-4's list prices (its measured tokens in and out, counted by Qwen's
tokenizer), and every system's measured wall time per query on the table's default
machine (``cpu-2vcpu``).

CPU etiquette on the shared 2-core machine: the LLM part (minutes to hours) runs niced
(``nice -n 10``) and *without* the shared CPU lock, so other jobs keep running (they slow
it; each answer records the load average and whether another job held the lock). The
SLM training and the SLM latency measurement take the lock, and so does a short check of
the LLM's own latency: the first ``--n-quiet`` test queries asked again while holding it,
so that both latencies are measured without other jobs' load. Every LLM answer is appended
to ``bench/out/llm_vs_slm/llm_answers.jsonl`` as it comes, and trained SLMs are saved
there, so an interrupted run resumes without asking or training again.

Run (from the repository root; the script takes the lock itself)::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0 \\
        .venv/bin/python bench/llm_vs_slm.py --write-results
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from contextlib import nullcontext
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from _machine import LOCK, cpu_lock, machine

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "banking77"
OUT = REPO / "bench" / "out" / "llm_vs_slm"
JSON_OUT = REPO / "bench" / "results" / "llm_vs_slm.json"
MODEL = "qwen2.5-1.5b"
ENV_PREFIX = "HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 SLMSTACK_PROGRESS=0"
# No cross-run recipe for BANKING77 is documented as chosen on validation in
# bench/RESULTS.md (each run kept its best epoch on validation; the table's run was the
# best on test), so this is the brief's fallback (epochs 4, lr 1e-4) with the label
# smoothing and 5 % validation split that every documented BANKING77 attempt shared:
# attempt #5 of bench/classify.py.
FINETUNE = {"strategy": "finetune", "epochs": 4, "learning_rate": 1e-4,
            "label_smoothing": 0.1, "val_fraction": 0.05}  # fmt: skip
HEAD = {"strategy": "head"}
HOLDOUT = 50  # training queries kept out of the LLM's demonstration pool for validation


# ---------------------------------------------------------------- prompt variants
# Hand-written from the label names and the *training* texts of each intent (never the
# test set): what a customer asking for this intent wants, and how it differs from its
# nearest neighbours among the 77 labels.
DESCRIPTIONS = {
    "Refund_not_showing_up": "a refund the customer was promised has not appeared in the account",
    "activate_my_card": "how to activate a card the customer has received",
    "age_limit": "how old one must be to open an account; accounts for children",
    "apple_pay_or_google_pay": "using Apple Pay or Google Pay, including topping up with them",
    "atm_support": "which ATMs accept the card and where to withdraw cash",
    "automatic_top_up": "setting up, using or the limits of auto top-up",
    "balance_not_updated_after_bank_transfer": (
        "money sent in by bank transfer is not yet in the balance"
    ),
    "balance_not_updated_after_cheque_or_cash_deposit": (
        "a deposited cheque or cash is not yet in the balance"
    ),
    "beneficiary_not_allowed": (
        "a transfer to a beneficiary or payee is not allowed or cannot be added"
    ),
    "cancel_transfer": "cancelling or undoing a transfer the customer made by mistake",
    "card_about_to_expire": "the card expires soon; getting a replacement",
    "card_acceptance": "where and for what (shops, online) the card can be used",
    "card_arrival": "a card that was ordered or sent has not arrived; tracking it",
    "card_delivery_estimate": "how long card delivery takes, or how the card is delivered",
    "card_linking": "linking or adding a card (a found or new card) to the account or app",
    "card_not_working": "the card stopped working or does not work, in general",
    "card_payment_fee_charged": "an extra fee charged on a card payment",
    "card_payment_not_recognised": "a card payment the customer does not recognise",
    "card_payment_wrong_exchange_rate": (
        "a wrong exchange rate applied to a card payment or purchase"
    ),
    "card_swallowed": "an ATM kept (swallowed) the card",
    "cash_withdrawal_charge": "a fee charged for an ATM cash withdrawal",
    "cash_withdrawal_not_recognised": "a cash withdrawal the customer did not make",
    "change_pin": "how or where to change the PIN",
    "compromised_card": "the card or its details may be stolen or used by someone else; fraud",
    "contactless_not_working": "contactless payment does not work",
    "country_support": "which countries the card or service is available in",
    "declined_card_payment": "a card payment in a shop or online was declined",
    "declined_cash_withdrawal": "an ATM refused a cash withdrawal",
    "declined_transfer": "a transfer was declined or not accepted",
    "direct_debit_payment_not_recognised": "a direct debit payment the customer does not recognise",
    "disposable_card_limits": "limits and restrictions of disposable virtual cards",
    "edit_personal_details": "changing name, address or other personal details",
    "exchange_charge": "fees for exchanging currencies",
    "exchange_rate": "what the exchange rates are and where they come from",
    "exchange_via_app": "how to exchange one currency for another in the app",
    "extra_charge_on_statement": (
        "an unexplained small extra charge (such as 1 pound or 1 euro) on the statement"
    ),
    "failed_transfer": "a transfer failed or did not go through",
    "fiat_currency_support": "which fiat currencies can be held or exchanged",
    "get_disposable_virtual_card": "how to get a disposable virtual card",
    "get_physical_card": "finding or receiving the PIN of the physical card",
    "getting_spare_card": "getting an extra or second physical card",
    "getting_virtual_card": "getting a virtual card, or when it comes",
    "lost_or_stolen_card": "the card was lost or stolen",
    "lost_or_stolen_phone": "the phone with the app was lost or stolen",
    "order_physical_card": "how to order or receive a physical card",
    "passcode_forgotten": "forgot or must reset the app passcode",
    "pending_card_payment": "a card payment is still pending",
    "pending_cash_withdrawal": "a cash withdrawal is still pending",
    "pending_top_up": "a top-up is still pending or has not gone through yet",
    "pending_transfer": "a transfer is still pending",
    "pin_blocked": "the PIN is blocked after too many wrong tries; unblocking it",
    "receiving_money": "receiving money or a salary into the account, possibly in another currency",
    "request_refund": "asking for a refund for a purchase",
    "reverted_card_payment?": "a card payment was cancelled, reverted or returned",
    "supported_cards_and_currencies": "which cards and currencies can be used to add money",
    "terminate_account": "closing or deleting the account",
    "top_up_by_bank_transfer_charge": "fees for topping up or adding money by bank transfer",
    "top_up_by_card_charge": "fees for topping up with a card",
    "top_up_by_cash_or_cheque": "topping up with cash or a cheque",
    "top_up_failed": "a top-up failed or was rejected",
    "top_up_limits": "how much or how often one can top up",
    "top_up_reverted": "a top-up went through but was then reverted or the money is gone",
    "topping_up_by_card": "how to top up with a card, or problems doing it",
    "transaction_charged_twice": "the same payment was charged twice",
    "transfer_fee_charged": "a fee charged for a transfer",
    "transfer_into_account": "how to transfer or add money into the account from another account",
    "transfer_not_received_by_recipient": (
        "a transfer the customer sent has not reached the recipient"
    ),
    "transfer_timing": "how long transfers take to arrive",
    "unable_to_verify_identity": "the identity verification does not work or fails",
    "verify_my_identity": "how to verify identity, and which documents are needed",
    "verify_source_of_funds": (
        "showing or checking where the money (the source of funds) comes from"
    ),
    "verify_top_up": "the verification code of a top-up with a card",
    "virtual_card_not_working": "the virtual card does not work or was rejected",
    "visa_or_mastercard": "whether the card is Visa or Mastercard, or getting one of them",
    "why_verify_identity": "why identity verification is needed",
    "wrong_amount_of_cash_received": "the ATM gave less cash than requested",
    "wrong_exchange_rate_for_cash_withdrawal": "a wrong exchange rate on a cash withdrawal abroad",
}
GUIDE = (
    "The user is a customer of a bank that offers cards, top-ups, transfers and currency "
    "exchange in an app. The earlier turns are example texts most like this one, each with "
    "its correct label (the most similar last). Use them as evidence, but choose the label "
    "whose meaning fits this text best."
)
PROMPTS: dict[str, dict[str, Any]] = {
    "bare": {"what": "the label names only (the skill's default prompt)"},
    "described": {"what": "hand-written one-line descriptions of each label, and a note on "
                          "the bank and the demonstrations (GUIDE)"},
}  # fmt: skip


def prompt_params(variant: str, labels: list[str]) -> dict[str, Any]:
    """LLMClassifier parameters of a prompt variant."""
    if variant == "bare":
        return {"label_descriptions": None, "instructions": ""}
    if variant == "spaced":
        return {"label_descriptions": {lab: lab.replace("_", " ").rstrip("?")
                                       for lab in labels}, "instructions": ""}  # fmt: skip
    missing = sorted(set(labels) - set(DESCRIPTIONS))
    if missing:
        raise SystemExit(f"no description for labels {missing}")
    return {"label_descriptions": {lab: DESCRIPTIONS[lab] for lab in labels},
            "instructions": GUIDE}  # fmt: skip


# ---------------------------------------------------------------- data and machine
def command_line() -> str:
    """The command that ran this benchmark, as it can be typed again."""
    return " ".join([ENV_PREFIX, ".venv/bin/python bench/llm_vs_slm.py", *sys.argv[1:]])


def read_split(split: str) -> list[tuple[str, str]]:
    with open(DATA / f"{split}.csv", encoding="utf-8", newline="") as fh:
        return [(r["text"], r["category"]) for r in csv.DictReader(fh)]


def lock_held_by_other() -> bool:
    """Whether a process holds the shared CPU lock now (read from /proc/locks; passive)."""
    try:
        inode = str(LOCK.stat().st_ino)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return False
    return any("->" not in ln and "FLOCK" in ln and ln.split()[5].endswith(":" + inode)
               for ln in lines)  # fmt: skip


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


# ---------------------------------------------------------------- the SLMs (under the lock)
def trained_slm(name: str, params: dict[str, Any], examples: list[Any]) -> tuple[Any, dict]:
    """The SLM ``name`` saved under ``OUT`` (trained on ``examples`` first when missing).

    ``bench/speed.py`` takes its ``finetune`` skill from here too. The caller holds the lock.
    """
    from slmstack.skills.classifier import TextClassifier

    folder, info_file = OUT / name, OUT / f"{name}-train.json"
    if info_file.exists():
        return TextClassifier.load(folder), json.loads(info_file.read_text())
    print(f"training {name} {params} on {len(examples)} texts", flush=True)
    load0, cpu0 = os.getloadavg()[0], time.process_time()
    start = time.perf_counter()
    skill = TextClassifier(**params).fit(examples)
    info = {"train_s": time.perf_counter() - start, "train_cpu_s": time.process_time() - cpu0,
            "load_before": load0, "load_after": os.getloadavg()[0],
            "params": {k: v for k, v in skill.get_params().items() if k != "allow_pickle"},
            "best_epoch": skill.best_epoch_, "history": skill.history_,
            "val_metrics": skill.metrics_}  # fmt: skip
    skill.save(folder)
    info_file.write_text(json.dumps(info, indent=1))
    return skill, info


def slm_phase(train: list[tuple[str, str]], test: list[tuple[str, str]],
              sample: list[int]) -> dict[str, Any]:  # fmt: skip
    cache = OUT / "slm.json"
    if cache.exists():
        print(f"SLM results from {cache}", flush=True)
        return dict(json.loads(cache.read_text()))
    import torch

    from slmstack.types import Example

    torch.set_num_threads(2)
    examples = [Example(t, lab) for t, lab in train]
    texts = [t for t, _ in test]
    out: dict[str, Any] = {}
    with cpu_lock() as waited:
        out["lock_wait_s"] = waited
        for name, params in (("head", HEAD), ("finetune", FINETUNE)):
            skill, info = trained_slm(name, params, examples)
            print(f"scoring {name} on {len(texts)} test texts", flush=True)
            start = time.perf_counter()
            probs = skill.predict_proba(texts)
            batch_s = time.perf_counter() - start
            pred = [skill.classes_[int(i)] for i in probs.argmax(axis=1)]
            for t in texts[:20]:  # warm-up
                skill.predict([t])
            load0 = os.getloadavg()[0]
            lat, single, flagged = [], [], 0
            for i in sample:
                start = time.perf_counter()
                p = skill.predict([texts[i]])[0]
                lat.append(time.perf_counter() - start)
                single.append(p.label)
                flagged += p.abstained is not None
            out[name] = {
                **info,
                "pred_full": pred,
                "accuracy_full": sum(p == g for p, (_, g) in zip(pred, test, strict=True))
                / len(test),
                "accuracy_sample": sum(pred[i] == test[i][1] for i in sample) / len(sample),
                "single_query_s": lat,
                "single_equals_batch": sum(s == pred[i] for s, i in zip(single, sample,
                                                                        strict=True)),
                "out_of_scope_flags_sample": flagged,
                "batch_s": batch_s,
                "batch_texts_per_s": len(texts) / batch_s,
                "load_during_latency": [load0, os.getloadavg()[0]],
            }  # fmt: skip
            print(f"{name}: test {out[name]['accuracy_full']:.4f}, sample "
                  f"{out[name]['accuracy_sample']:.4f}, p50 {pct(lat, 50) * 1000:.1f} ms",
                  flush=True)  # fmt: skip
    cache.write_text(json.dumps(out))
    return out


# ---------------------------------------------------------------- the LLM (niced, no lock)
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen[bytes], timeout_s: float = 600.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                json.load(response)
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if server.poll() is not None:
            raise SystemExit(f"the LLM server exited with code {server.returncode}; "
                             f"see {OUT / 'server.log'}")  # fmt: skip
        time.sleep(0.5)
    raise SystemExit(f"the LLM server at {url} did not answer within {timeout_s:g} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def llama_timings(log: Path, offset: int) -> dict[str, float | None]:
    """llama.cpp's own timing of the request logged after ``offset`` (its compute alone)."""
    with log.open("rb") as fh:
        fh.seek(offset)
        text = fh.read().decode("utf-8", errors="replace")
    out: dict[str, float | None] = {}
    for key, pattern in (("llama_prompt_ms", r"prompt eval time =\s*([\d.]+) ms"),
                         ("llama_eval_ms", r"print:\s+eval time =\s*([\d.]+) ms"),
                         ("llama_total_ms", r"total time =\s*([\d.]+) ms")):  # fmt: skip
        found = re.findall(pattern, text)
        out[key] = float(found[-1]) if len(found) == 1 else None
    return out


class Answers:
    """The LLM's answers, one JSON line each, appended as they come (the checkpoint)."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[str, dict[int, dict[str, Any]]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.done.setdefault(rec["key"], {})[rec["i"]] = rec

    def add(self, rec: dict[str, Any]) -> None:
        self.done.setdefault(rec["key"], {})[rec["i"]] = rec
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


class LLMRun:
    """The served model, one fitted LLMClassifier, and the checkpointed answers."""

    def __init__(self, pool: list[tuple[str, str]], answers: Answers):
        self.pool = pool
        self.answers = answers
        self.clf: Any = None
        self.server: subprocess.Popen[bytes] | None = None
        self.log: Any = None
        self.fit_s = 0.0
        self.used: list[dict[str, Any]] = []  # every answer the report rests on

    def start(self) -> None:
        from slmstack.models import resolve
        from slmstack.skills.llm_classifier import LLMClassifier
        from slmstack.types import Example

        gguf = resolve(MODEL).weights
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        self.log = (OUT / "server.log").open("ab")
        cmd = ["nice", "-n", "10", sys.executable, "-m", "llama_cpp.server", "--model",
               str(gguf), "--model_alias", MODEL, "--n_ctx", "4096", "--n_threads", "2",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        print(" ".join(cmd), flush=True)
        self.server = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        wait_ready(url + "/v1", self.server)
        options = {"base_url": url + "/v1", "api_key_env": None, "json_format": "json_object",
                   "timeout_s": 1800.0, "retries": 1}  # fmt: skip
        start = time.perf_counter()
        self.clf = LLMClassifier(model=MODEL, runtime="openai", backend_options=options,
                                 k=16, retriever="embedding",
                                 confidence_method="greedy")  # fmt: skip
        self.clf.fit([Example(t, lab) for t, lab in self.pool])
        self.fit_s = time.perf_counter() - start
        print(f"LLMClassifier fitted on {len(self.pool)} demonstrations in {self.fit_s:.0f} s",
              flush=True)  # fmt: skip

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
            self.server = None
        if self.log is not None:
            self.log.close()

    def score(self, split: str, variant: str, k: int, items: list[tuple[int, str, str]],
              *, locked: bool = False) -> list[dict[str, Any]]:  # fmt: skip
        """Answers for ``items`` (index, text, gold) with this prompt; asks only the missing.

        ``locked``: hold the shared CPU lock while asking (the short latency check).
        """
        key = f"{split}|{variant}|k{k}"
        done = self.answers.done.get(key, {})
        todo = [it for it in items if it[0] not in done]
        if todo:
            if self.clf is None:
                self.start()
            with cpu_lock() if locked else nullcontext():
                wanted = {i for i, _, _ in items}  # answers of other runs' samples do not count
                self._ask(key, variant, k, todo, len(items),
                          {i: r for i, r in done.items() if i in wanted})  # fmt: skip
            done = self.answers.done[key]
        recs = [done[i] for i, _, _ in items]
        self.used += recs
        return recs

    def _ask(self, key: str, variant: str, k: int, todo: list[tuple[int, str, str]],
             total: int, done: dict[int, dict[str, Any]]) -> None:  # fmt: skip
        assert self.server is not None
        self.clf.set_params(k=k, **prompt_params(variant, self.clf.classes_))
        self.clf.predict([self.pool[0][0]])  # warm-up: evaluates the new system prompt
        right = sum(r["label"] == r["gold"] for r in done.values())
        for n, (i, text, gold) in enumerate(todo, len(done) + 1):
            cpu0 = cpu_seconds(self.server.pid)
            held = lock_held_by_other()
            log_at = (OUT / "server.log").stat().st_size
            start = time.perf_counter()
            p = self.clf.predict([text])[0]
            wall = time.perf_counter() - start
            rec = {"key": key, "i": i, "gold": gold, "label": p.label,
                   "abstained": p.abstained, "confidence": p.confidence,
                   "method": p.data.get("confidence_method"),
                   "tokens_in": p.usage.input_tokens, "tokens_out": p.usage.output_tokens,
                   "wall_s": wall, "skill_ms": p.usage.latency_ms,
                   "server_cpu_s": cpu_seconds(self.server.pid) - cpu0,
                   **llama_timings(OUT / "server.log", log_at),
                   "load1": os.getloadavg()[0], "lock_held": held or lock_held_by_other(),
                   "at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
            self.answers.add(rec)
            right += p.label == gold
            print(f"[{key}] {n}/{total} acc {right / n:.3f}  {gold} -> {p.label}  "
                  f"{wall:.1f} s  in {p.usage.input_tokens}  load {rec['load1']:.1f}"
                  f"{'  (lock held)' if rec['lock_held'] else ''}", flush=True)  # fmt: skip

    def nearest_labels(self, texts: list[str]) -> list[str]:
        """The label of each text's top demonstration (the retriever alone, as a classifier).

        The fitted classifier's pool when there is one; else the same pool built directly
        (the same ShotPool the skill builds), so a run whose answers are all cached starts
        no server.
        """
        pool = self.clf.pool_ if self.clf is not None else None
        if pool is None:
            from slmstack.skills._llm_shots import ShotPool

            pool = ShotPool("embedding", "minilm")
            pool.build(self.pool, index=True)
        return [pool.answers[ix[0]] for ix in pool.nearest(texts, 1)]


def summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    wall = [r["wall_s"] for r in recs]
    return {
        "n": len(recs),
        "accuracy": sum(r["label"] == r["gold"] for r in recs) / len(recs),
        "invalid": sum(r["label"] is None for r in recs),
        "p50_s": pct(wall, 50), "p95_s": pct(wall, 95), "mean_s": statistics.fmean(wall),
        "tokens_in_mean": statistics.fmean(r["tokens_in"] for r in recs),
        "tokens_out_mean": statistics.fmean(r["tokens_out"] for r in recs),
    }  # fmt: skip


def pick(scores: dict[str, dict[str, Any]]) -> str:
    """Best validation accuracy; ties go to the shorter prompt (cheaper, faster)."""
    return max(scores, key=lambda c: (scores[c]["accuracy"], -scores[c]["tokens_in_mean"]))


def llm_phase(run: LLMRun, val: list[tuple[int, str, str]], test: list[tuple[int, str, str]],
              ks: list[int], n_quiet: int) -> dict[str, Any]:  # fmt: skip
    base_k = 8 if 8 in ks else ks[0]
    stage1 = {f"{v}|k{base_k}": summary(run.score("val", v, base_k, val)) for v in PROMPTS}
    variant = pick(stage1).split("|")[0]
    stage2 = {f"{variant}|k{k}": summary(run.score("val", variant, k, val))
              for k in ks if k != base_k}  # fmt: skip
    scores = {**stage1, **stage2}
    chosen = pick({c: s for c, s in scores.items() if c.startswith(variant + "|")})
    k = int(chosen.split("|k")[1])
    print(f"chosen on validation: prompt {variant}, k {k}", flush=True)
    recs = run.score("test", variant, k, test)
    # The same first test queries again, holding the shared CPU lock: the LLM's latency
    # without other jobs' load, comparable with the SLMs' (also measured under the lock).
    quiet = run.score("quiet", variant, k, test[:n_quiet], locked=True)
    return {"validation": scores, "chosen": {"prompt": variant, "k": k},
            "test_records": recs, "quiet_records": quiet, "fit_s": run.fit_s,
            "answered": [min(r["at"] for r in run.used), max(r["at"] for r in run.used)],
            "embedding_1nn_test": run.nearest_labels([t for _, t, _ in test]),
            "embedding_1nn_val": statistics.fmean(
                p == g for p, (_, _, g) in zip(run.nearest_labels([t for _, t, _ in val]), val,
                                               strict=True))}  # fmt: skip


# ---------------------------------------------------------------- the report
def money(d: Decimal) -> str:
    return f"${d:,.2f}" if d >= 1 else f"${d:.4f}"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} ms"


def per_million(total: Decimal, n: int) -> Decimal:
    return total * 1_000_000 / n


def paired_bootstrap(
    a: list[bool], b: list[bool], seed: int = 0, rounds: int = 2000
) -> list[float]:
    """95 % interval of mean(a) - mean(b) over resampled queries (the same for both)."""
    import numpy as np

    x = np.array(a, dtype=float) - np.array(b, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(rounds, len(x)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def median_of(recs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in recs if r.get(key) is not None]
    return statistics.median(values) if values else None


def load_stats(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def build_report(
    *,
    train: list[tuple[str, str]],
    test: list[tuple[str, str]],
    sample: list[int],
    slm: dict[str, Any],
    llm: dict[str, Any],
    meta: dict[str, Any],
) -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from slmstack.costs import load_prices

    prices = load_prices()
    box = prices.default_machine
    gold = [test[i][1] for i in sample]
    n = len(sample)

    def acc(pred: list[str | None], truth: list[str]) -> float:
        return sum(p == g for p, g in zip(pred, truth, strict=True)) / len(truth)

    majority = Counter(g for _, g in train).most_common(1)[0][0]
    tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    pool_m = tfidf.fit_transform([t for t, _ in train])
    nn = (tfidf.transform([t for t, _ in test]) @ pool_m.T).toarray().argmax(axis=1)
    tfidf_pred = [train[int(j)][1] for j in nn]
    all_gold = [g for _, g in test]

    recs = llm["test_records"]
    assert [r["i"] for r in recs] == sample
    llm_pred = [r["label"] for r in recs]
    wall = [r["wall_s"] for r in recs]
    t_in, t_out = sum(r["tokens_in"] for r in recs), sum(r["tokens_out"] for r in recs)
    quiet = llm["quiet_records"]
    quiet_wall = [r["wall_s"] for r in quiet]
    answered = {r["i"]: r["label"] for r in recs}
    llm_busy = per_million(prices.compute_cost(box, sum(wall)), n)
    llm_local = per_million(prices.compute_cost(box, sum(quiet_wall)), len(quiet))
    llm_cpu = per_million(prices.compute_cost(box, sum(r["server_cpu_s"] for r in recs) / 2), n)
    gpt4 = per_million(prices.token_cost("gpt-4", t_in, t_out), n)
    systems: dict[str, dict[str, Any]] = {
        "majority class": {"accuracy_sample": acc([majority] * n, gold),
                           "accuracy_full": acc([majority] * len(test), all_gold)},
        "TF-IDF 1-NN": {"accuracy_sample": acc([tfidf_pred[i] for i in sample], gold),
                        "accuracy_full": acc(tfidf_pred, all_gold)},
        "MiniLM 1-NN (the LLM's top demonstration)": {
            "accuracy_sample": acc(llm["embedding_1nn_test"], gold)},
        "LLM": {"accuracy_sample": acc(llm_pred, gold), "invalid": sum(p is None for p in llm_pred),
                "p50_ms": pct(quiet_wall, 50) * 1000, "p95_ms": pct(quiet_wall, 95) * 1000,
                "mean_ms": statistics.fmean(quiet_wall) * 1000, "n_latency": len(quiet),
                "quiet_same_answer": sum(r["label"] == answered[r["i"]] for r in quiet),
                "p50_ms_loaded": pct(wall, 50) * 1000, "p95_ms_loaded": pct(wall, 95) * 1000,
                "mean_ms_loaded": statistics.fmean(wall) * 1000,
                "load1_quiet": load_stats([r["load1"] for r in quiet]),
                "llama_total_ms_median": median_of(quiet, "llama_total_ms"),
                "llama_total_ms_median_loaded": median_of(recs, "llama_total_ms"),
                "tokens_in_mean": t_in / n, "tokens_out_mean": t_out / n,
                "tokens_in_total": t_in, "tokens_out_total": t_out,
                "server_cpu_s_mean": statistics.fmean(r["server_cpu_s"] for r in recs),
                "cost_local_per_1m": llm_local, "cost_local_loaded_per_1m": llm_busy,
                "cost_local_server_cpu_per_1m": llm_cpu,
                "cost_gpt4_per_1m": gpt4,
                "confidence_methods": dict(Counter(r["method"] for r in recs)),
                "load1": load_stats([r["load1"] for r in recs]),
                "share_with_lock_held_by_others": statistics.fmean(
                    bool(r["lock_held"]) for r in recs)},
    }  # fmt: skip
    for name in ("head", "finetune"):
        s = slm[name]
        lat = s["single_query_s"]
        systems[f"SLM {name}"] = {
            # From the saved full-test predictions, so it is always this run's sample (the
            # SLM results are cached; an earlier run may have used another --n-test).
            "accuracy_sample": acc([s["pred_full"][i] for i in sample], gold),
            "accuracy_full": s["accuracy_full"], "latency_queries": len(lat),
            "p50_ms": pct(lat, 50) * 1000, "p95_ms": pct(lat, 95) * 1000,
            "mean_ms": statistics.fmean(lat) * 1000,
            "cost_local_per_1m": per_million(prices.compute_cost(box, sum(lat)), n),
            "cost_local_batch_per_1m": per_million(prices.compute_cost(box, s["batch_s"]),
                                                   len(test)),
            "train_s": s["train_s"], "train_cpu_s": s["train_cpu_s"],
            "train_cost": prices.compute_cost(box, s["train_s"]),
            "best_epoch": s.get("best_epoch"), "history": s.get("history"),
            "out_of_scope_flags_sample": s["out_of_scope_flags_sample"],
            "single_equals_batch": s["single_equals_batch"],
            "load_during_latency": s["load_during_latency"],
            "train_load": [s.get("load_before"), s.get("load_after")],
            "batch_texts_per_s": s["batch_texts_per_s"],
        }  # fmt: skip
    ft, lm = systems["SLM finetune"], systems["LLM"]
    ft_right = [slm["finetune"]["pred_full"][i] == test[i][1] for i in sample]
    llm_right = [p == g for p, g in zip(llm_pred, gold, strict=True)]
    gap = ft["accuracy_sample"] - lm["accuracy_sample"]
    speed = lm["p50_ms"] / ft["p50_ms"]
    cheaper = gpt4 / ft["cost_local_per_1m"]
    targets = {
        "accuracy_gap_points": 100 * gap,
        "accuracy_gap_95ci_points": [100 * x for x in paired_bootstrap(ft_right, llm_right)],
        "p50_ratio": speed,
        "p50_ratio_llm_loaded": lm["p50_ms_loaded"] / ft["p50_ms"],
        "accuracy_and_latency_met": gap >= 0.20 and speed >= 100,
        "gpt4_over_slm_cost": cheaper,
        "gpt4_over_slm_cost_batch": gpt4 / ft["cost_local_batch_per_1m"],
        "llm_local_over_slm_cost": llm_local / ft["cost_local_per_1m"],
        "cost_met": cheaper >= 1000,
    }  # fmt: skip
    return {
        "meta": meta,
        "prices": {"version": prices.version, "machine": box,
                   "machine_per_hour": prices.machine(box).per_hour,
                   "gpt4_per_1k": [prices.model("gpt-4").input_per_1k,
                                   prices.model("gpt-4").output_per_1k]},
        "data": {"train": len(train), "test": len(test), "test_sample": n,
                 "test_sample_indexes": sample, "sampling": "simple random (the first "
                 "n of a seeded shuffle), seed 0, not stratified", "majority_label": majority},
        "llm": {"validation": llm["validation"], "chosen": llm["chosen"],
                "answered": llm["answered"],
                "fit_s": llm["fit_s"], "validation_embedding_1nn": llm["embedding_1nn_val"]},
        "systems": systems,
        "targets": targets,
        "headline": {"finetune_sample": ft["accuracy_sample"], "llm_sample": lm["accuracy_sample"],
                     "finetune_p50_ms": ft["p50_ms"], "llm_p50_ms": lm["p50_ms"],
                     "gpt4_per_1m": gpt4, "finetune_per_1m": ft["cost_local_per_1m"],
                     **targets},
    }  # fmt: skip


SECTION = "## Fine-tuned SLM against a local LLM on BANKING77 (`bench/llm_vs_slm.py`)"


def section(r: dict[str, Any]) -> str:
    m, s, t, p = r["meta"], r["systems"], r["targets"], r["prices"]
    lm, ft = s["LLM"], s["SLM finetune"]
    ch = r["llm"]["chosen"]
    pc = lambda x: f"{100 * x:.1f}"  # noqa: E731
    yes = lambda ok: "**yes**" if ok else "**no**"  # noqa: E731
    lines = [
        SECTION, "",
        f"Measured on {m['machine']['cpu_count']} CPU cores "
        f"({m['machine']['model_name']}, {m['machine']['cpu_flags']}), shared with other "
        f"engineers' jobs: SLMs trained and timed by {m['slm_measured']}, LLM answers "
        f"{r['llm']['answered'][0][:16].replace('T', ' ')} to "
        f"{r['llm']['answered'][1][:16].replace('T', ' ')} UTC; report written "
        f"{m['finished']}. Prices: packaged table "
        f"{p['version']}, machine `{p['machine']}` at ${p['machine_per_hour']}/h, GPT-4 "
        f"${p['gpt4_per_1k'][0]} in / ${p['gpt4_per_1k'][1]} out per 1k tokens.", "",
        f"- **LLM**: {m['model']} = Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF, served by "
        "`python -m llama_cpp.server --n_ctx 4096 --n_threads 2` (started under `nice -n 10`; "
        "in the run of 2026-12-01 the lead raised it to nice -15 and then to `chrt -r 1` "
        "during the test pass, so that it finished beside other engineers' jobs; see the "
        "load figures below), "
        "reached through `LLMClassifier(runtime=\"openai\", json_format=\"json_object\", "
        "retriever=\"embedding\")`: the 77 labels in the system prompt, the k nearest "
        "training texts (MiniLM cosine) as earlier chat turns, most similar last, the answer "
        "constrained to the 77 labels by a JSON-schema enum (llama.cpp grammar), one greedy "
        "call per query (`confidence_method=\"greedy\"`: no log-probabilities, which "
        "llama-cpp-python computes in Python over Qwen's 152k-token vocabulary, about half of "
        "each call's time in an earlier try). "
        f"Demonstration pool: {m['n_pool']} training texts (the "
        f"training set less {r['data']['train'] - m['n_pool']} queries held out for "
        "validation).",
        f"- **Chosen on validation** ({r['meta']['args']['n_val']} of those held-out training "
        f"queries, seed 1; never the test set): prompt `{ch['prompt']}`, k = {ch['k']}. "
        "The prompt variant was picked first at k = 8, then k among the others with that "
        "prompt; ties go to the shorter prompt.",
        f"- **SLMs**: `TextClassifier` on all-MiniLM-L6-v2 trained on all {r['data']['train']} "
        f"training texts: `finetune` with {m['finetune_params']} (no cross-run BANKING77 "
        "recipe in bench/RESULTS.md was chosen on validation, so this is the brief's "
        "fallback, epochs 4 and lr 1e-4, with the label smoothing and 5 % split of every earlier "
        f"attempt: attempt #5 of `bench/classify.py`; best epoch {ft['best_epoch']}), and "
        "`head`. Accuracy is the top label (out-of-scope flags ignored, as in "
        "`bench/classify.py`).",
        f"- **Test**: {r['data']['test_sample']} of the {r['data']['test']} test queries, "
        f"{r['data']['sampling']}. Latency: LLM, wall time of `predict([text])` (query "
        "embedding, retrieval, HTTP, generation); SLMs, wall time of an in-process "
        f"`predict([text])` on {ft['latency_queries']} test queries (seed 0), holding the "
        "shared CPU lock, after 20 warm-up calls.", "",
        "Validation (accuracy on the held-out training queries):", "",
        "| prompt | k | accuracy | mean tokens in | p50 s |", "|---|---|---|---|---|",
    ]  # fmt: skip
    for cfg, v in r["llm"]["validation"].items():
        prompt, k = cfg.split("|k")
        lines.append(f"| {prompt} | {k} | {pc(v['accuracy'])} | {v['tokens_in_mean']:.0f} | "
                     f"{v['p50_s']:.2f} |")  # fmt: skip
    lines += [
        "", "Prompt variants: " + "; ".join(f"`{k}`: {v}" for k, v in m["prompts"].items())
        + f". The MiniLM 1-NN (the top demonstration's label) scores "
        f"{pc(r['llm']['validation_embedding_1nn'])} on the same validation queries.", "",
        f"| system | accuracy, {r['data']['test_sample']}-query sample | accuracy, full test "
        "| p50 ms | p95 ms | tokens in / out per query | $ per 1M requests, measured compute "
        "| $ per 1M requests at GPT-4 list prices |", "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, v in s.items():
        full = pc(v["accuracy_full"]) if "accuracy_full" in v else "—"
        lat = f"{v['p50_ms']:,.1f} | {v['p95_ms']:,.1f}" if "p50_ms" in v else "— | —"
        toks = (f"{v['tokens_in_mean']:.0f} / {v['tokens_out_mean']:.1f}"
                if "tokens_in_mean" in v else "—")  # fmt: skip
        local = money(v["cost_local_per_1m"]) if "cost_local_per_1m" in v else "—"
        g4 = money(v["cost_gpt4_per_1m"]) if "cost_gpt4_per_1m" in v else "—"
        label = f"LLM ({ch['prompt']}, k={ch['k']})" if name == "LLM" else name
        lines.append(f"| {label} | {pc(v['accuracy_sample'])} | {full} | {lat} | {toks} | "
                     f"{local} | {g4} |")  # fmt: skip
    ci = t["accuracy_gap_95ci_points"]
    lines += [
        "", "| target | measured | met? |", "|---|---|---|",
        f"| fine-tuned SLM ≥ 20 points more accurate than the local LLM, at ≥ 100× lower p50 "
        f"latency | {t['accuracy_gap_points']:+.1f} points on the sample (paired bootstrap 95% "
        f"CI {ci[0]:+.1f} to {ci[1]:+.1f}); p50 {lm['p50_ms']:,.0f} ms (LLM, no other jobs) "
        f"against "
        f"{ft['p50_ms']:.1f} ms = {t['p50_ratio']:,.0f}× (with other jobs' load: "
        f"{t['p50_ratio_llm_loaded']:,.0f}×) | {yes(t['accuracy_and_latency_met'])}"
        f" ({'yes' if t['accuracy_gap_points'] >= 20 else 'no'} on accuracy, "
        f"{'yes' if t['p50_ratio'] >= 100 else 'no'} on latency) |",
        f"| cost per 1M requests, SLM ≥ 1000× cheaper than GPT-4 at list prices, from measured "
        f"compute | {money(lm['cost_gpt4_per_1m'])} (the LLM's prompts at GPT-4 prices) against "
        f"{money(ft['cost_local_per_1m'])} (fine-tuned SLM, single queries on "
        f"`{p['machine']}`) = {t['gpt4_over_slm_cost']:,.0f}× | {yes(t['cost_met'])} |", "",
        f"LLM latency and local cost above are from the first {lm['n_latency']} test queries "
        "asked again while this script held the shared CPU lock (no other benchmark or test "
        f"running; {lm['quiet_same_answer']} of {lm['n_latency']} gave the same answer as in "
        f"the main pass; load {lm['load1_quiet']['min']:.1f} to {lm['load1_quiet']['max']:.1f})"
        f". In the main pass over all {r['data']['test_sample']} queries, niced and sharing "
        f"the cores with other engineers' jobs, p50 was {lm['p50_ms_loaded']:,.0f} ms and p95 "
        f"{lm['p95_ms_loaded']:,.0f} ms ({money(lm['cost_local_loaded_per_1m'])} per 1M at that "
        f"wall time); the 1-minute load average was {lm['load1']['min']:.1f} to "
        f"{lm['load1']['max']:.1f} (median {lm['load1']['median']:.1f}; 2.0 = both cores "
        "busy), and another job held the shared CPU lock during "
        f"{pc(lm['share_with_lock_held_by_others'])} % of those queries. The server process "
        f"used {lm['server_cpu_s_mean']:.1f} CPU s per query there "
        f"({money(lm['cost_local_server_cpu_per_1m'])} per 1M as CPU s / 2 cores). SLM "
        f"latency was measured under the lock (load {ft['load_during_latency'][0]:.1f} at the "
        f"start, {ft['load_during_latency'][1]:.1f} at the end).", "",
        f"Of the LLM's time per query (no other jobs), llama.cpp's own timed compute (prompt "
        f"evaluation and generation) took a median {ms(lm['llama_total_ms_median'])}; "
        "the rest is spent outside it: llama-cpp-python's server code in Python (including "
        "its log-probability post-processing), the query's embedding and retrieval, and HTTP.",
        "",
        f"Other money: the local LLM costs {t['llm_local_over_slm_cost']:,.0f}× the "
        "fine-tuned SLM per request at measured compute. The fine-tuned SLM in batches "
        f"({ft['batch_texts_per_s']:.0f} texts/s over the full test set) costs "
        f"{money(ft['cost_local_batch_per_1m'])} per 1M ({t['gpt4_over_slm_cost_batch']:,.0f}× "
        f"below GPT-4). Training it once took {ft['train_s']:.0f} s = "
        f"{money(ft['train_cost'])} on `{p['machine']}`; `head` "
        f"{s['SLM head']['train_s']:.0f} s = {money(s['SLM head']['train_cost'])}.", "",
        "Command (from the repository root; the script takes the CPU lock itself around the "
        "SLM part and the LLM's latency check):", "", "```", m["command"], "```", "",
        "Caveats:", "",
        *caveats(r),
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def caveats(r: dict[str, Any]) -> list[str]:
    """What the figures do not say."""
    n, n_val = r["data"]["test_sample"], r["meta"]["args"]["n_val"]
    lm = r["systems"]["LLM"]
    acc = lm["accuracy_sample"]
    out = []
    if n < 500:
        out.append(
            f"- This run scored {n} test queries, fewer than the 500 the issue asks for: at "
            "about 30 s per LLM query on the shared, loaded cores, 500 did not fit the "
            "session. On this many queries the 95 % sampling error of the LLM's accuracy is "
            f"about ±{196 * (acc * (1 - acc) / n) ** 0.5:.1f} points."
        )
    out += [
        f"- The prompt and k were chosen on {n_val} validation queries: one query is "
        f"{100 / n_val:.1f} points, so the choice between close settings is coarse.",
        "- The stand-in LLM is a 1.5-billion-parameter coder model quantised to 4 bits, not "
        "GPT-4: the GPT-4 column prices this prompt (its measured tokens) at GPT-4's list "
        "prices, it says nothing of GPT-4's accuracy. Tokens are counted by Qwen's tokenizer; "
        "GPT-4's differs somewhat on the same text.",
        "- Latency and compute cost are for 2 CPU cores. A GPU would likely cut the LLM's "
        "latency far more than the SLM's, so the latency ratio is specific to this machine.",
        "- Confidence methods of the LLM answers: "
        + ", ".join(f"{k} {v}" for k, v in lm["confidence_methods"].items())
        + " (greedy: no log-probabilities were asked for, so the LLM here has no confidence "
        "to cascade on; asking for them would add time).",
        "- The demonstration pool excludes the held-out validation queries, so the LLM draws on "
        f"{r['meta']['n_pool']} of the {r['data']['train']} training texts; the SLMs train on "
        "all of them.",
    ]  # fmt: skip
    return out


def write_section(report: dict[str, Any]) -> None:
    """Append the section to bench/RESULTS.md, or replace this script's earlier one."""
    results = REPO / "bench" / "RESULTS.md"
    text = results.read_text(encoding="utf-8")
    new = section(report)
    if SECTION in text:
        head, rest = text.split(SECTION, 1)
        tail = rest.find("\n## ")
        text = head + new + ("" if tail < 0 else rest[tail:])
    else:
        text = text.rstrip("\n") + "\n\n" + new
    results.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--n-val", type=int, default=40)
    ap.add_argument("--ks", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-quiet", type=int, default=25,
                    help="test queries asked again under the CPU lock, for the LLM's latency "
                         "without other jobs' load")  # fmt: skip
    ap.add_argument(
        "--write-results",
        action="store_true",
        help="write bench/results/llm_vs_slm.json and the bench/RESULTS.md section",
    )
    ap.add_argument("--smoke", action="store_true",
                    help="a minutes-long check of the script: 1/15 of the training set, "
                         "1 fine-tuning epoch, its own folder; writes no results")  # fmt: skip
    args = ap.parse_args()
    global OUT
    train, test = read_split("train"), read_split("test")
    if args.smoke:
        OUT = OUT.with_name("llm_vs_slm-smoke")
        train = train[::15]
        FINETUNE["epochs"] = 1
        args.write_results = False
    OUT.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    # Simple random samples with fixed seeds (not stratified), nested: a smaller --n-test
    # or --n-val takes a prefix of the same random order, so cached answers carry over.
    order = list(range(len(test)))
    random.Random(args.seed).shuffle(order)
    sample = sorted(order[: args.n_test])
    # The held-out set (and so the demonstration pool) does not depend on --n-val: the
    # first HOLDOUT draws leave the pool, the first --n-val of them are asked.
    drawn = random.Random(args.seed + 1).sample(range(len(train)), max(HOLDOUT, args.n_val))
    val_idx = sorted(drawn[: args.n_val])
    held = set(drawn)
    pool = [row for i, row in enumerate(train) if i not in held]
    val = [(i, *train[i]) for i in val_idx]
    test_items = [(i, *test[i]) for i in sample]
    print(f"train {len(train)} (pool {len(pool)}, validation {len(val)}), test {len(test)} "
          f"(sample {len(sample)}); majority label {Counter(g for _, g in train).most_common(1)}",
          flush=True)  # fmt: skip

    slm = slm_phase(train, test, sample)
    os.nice(10)  # the LLM part yields the CPU to everyone else's jobs
    run = LLMRun(pool, Answers(OUT / "llm_answers.jsonl"))
    try:
        llm = llm_phase(run, val, test_items, sorted(args.ks), args.n_quiet)
    finally:
        run.stop()
    report = build_report(
        train=train, test=test, sample=sample, slm=slm, llm=llm,
        meta={"started": started.strftime("%Y-%m-%d %H:%M UTC"),
              "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
              "slm_measured": datetime.fromtimestamp((OUT / "slm.json").stat().st_mtime, UTC)
              .strftime("%Y-%m-%d %H:%M UTC"),
              "command": command_line(), "args": vars(args), "machine": machine(),
              "model": MODEL, "finetune_params": FINETUNE, "n_pool": len(pool),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "prompts": {v: PROMPTS[v]["what"] for v in PROMPTS}},
    )  # fmt: skip
    text = json.dumps(report, indent=1, default=lambda d: str(d) if isinstance(d, Decimal)
                      else d)  # fmt: skip
    (OUT / "report.json").write_text(text)
    (OUT / "section.md").write_text(section(report), encoding="utf-8")
    if args.write_results:
        JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
        JSON_OUT.write_text(text + "\n")
        write_section(report)
        print(f"wrote {JSON_OUT} and the bench/RESULTS.md section", flush=True)
    print(json.dumps(report["headline"], indent=1, default=str))


if __name__ == "__main__":
    main()
