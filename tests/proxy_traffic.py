"""Synthetic recorded traffic for task discovery: what an app sends its LLM, as stored rows.

Five templates, interleaved in time, four of them under one system prompt (the hardest
case: only the user message tells them apart):

* ``banking``: BANKING77-style intent classification; the prompt lists the intents, the
  query is last; some queries start alike ("Please help: ...") to tempt a split;
* ``sroie``: SROIE-style receipt extraction answering JSON (sometimes fenced); a third of
  the receipts come from one shop chain and share their header lines;
* ``sentiment``: a second classification sharing the words "Classify this" with banking;
* ``summary``: one-sentence summaries (generation);
* ``chat``: free chat under another system prompt (generation).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from slmstack.proxy import TrafficRow

SYSTEM = "You are a helpful assistant."
INTENTS = {
    "card_arrival": [
        "where is my new card",
        "my card still has not arrived",
        "how long until my card arrives",
        "I ordered a card two weeks ago and nothing came",
    ],
    "lost_or_stolen_card": [
        "I lost my card",
        "my card was stolen yesterday",
        "someone took my wallet with the card",
    ],
    "exchange_rate": [
        "what exchange rate do you use",
        "is the euro rate fair",
        "how are rates calculated",
    ],
    "top_up_failed": [
        "my top up failed",
        "why did the top-up not go through",
        "top up was declined again",
    ],
    "refund_not_showing_up": [
        "the refund is not on my statement",
        "where is the refund from the shop",
        "merchant refunded me but I see nothing",
    ],
    "pin_blocked": [
        "my PIN is blocked",
        "I typed the wrong PIN three times",
        "how do I unblock my PIN",
    ],
    "cash_withdrawal_charge": [
        "why was I charged for taking cash out",
        "ATM fee looks wrong",
        "there is a fee on my withdrawal",
    ],
    "change_pin": ["how can I change my PIN", "I want a new PIN", "can I pick a different PIN"],
}
BANKING = ("Classify this banking query into one of these intents: " + ", ".join(INTENTS)
           + ".\nAnswer with the intent only.\n\nQuery: {q}\nIntent:")  # fmt: skip
SROIE = ("Extract the company, date, address and total from this receipt. Answer with a JSON "
         "object with keys company, date, address, total.\n\nReceipt:\n{r}")  # fmt: skip
SENTIMENT = "Classify this review's sentiment as positive or negative.\nReview: {r}\nSentiment:"
SUMMARY = "Summarize this support ticket in one sentence:\n{t}"
SHOPS = [("99 SPEED MART S/B", "LOT P.T. 2811, JALAN ANGSA, TAMAN BERKELEY, 41150 KLANG"),
         ("GARDENIA BAKERIES (KL) SDN BHD", "LOT 3, JALAN PELABUR 23/1, 40300 SHAH ALAM"),
         ("BOOK TA .K (TAMAN DAYA) SDN BHD", "NO.5: 55,57 & 59, JALAN SAGU 18, TAMAN DAYA"),
         ("UNIHAKKA INTERNATIONAL SDN BHD", "12, JALAN TAMPOI 7/4, KAWASAN PERINDUSTRIAN TAMPOI"),
         ("SANYU STATIONERY SHOP", "NO. 31G&33G, JALAN SETIA INDAH X, U13/X 40170 SETIA ALAM")]  # fmt: skip
REVIEWS = [("great service and fast delivery", "positive"), ("terrible, never again", "negative"),
           ("I love this app", "positive"), ("the staff were rude to me", "negative"),
           ("works exactly as promised", "positive"), ("it broke after two days", "negative")]  # fmt: skip
TICKETS = ["My card was charged twice for the same coffee and I want one charge back.",
           "The app logs me out every time I open the savings tab since the update.",
           "I moved house and need to change my address before the new card is sent.",
           "A transfer to my landlord is pending for three days; please check it."]  # fmt: skip
CHATS = ["hi there", "can you tell me a joke", "what is the weather like on Mars",
         "write a haiku about autumn", "who won the world cup in 2010"]  # fmt: skip


def _receipt(rng: random.Random, chain: bool) -> tuple[str, dict[str, str]]:
    company, address = SHOPS[0] if chain else rng.choice(SHOPS[1:])
    date = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/2018"
    items = [f"{rng.choice(['MILO', 'BREAD', 'PEN', 'RICE 5KG', 'SOAP'])} {rng.randint(1, 5)} x "
             f"{rng.randint(1, 30)}.{rng.randint(0, 99):02d}" for _ in range(rng.randint(1, 4))]  # fmt: skip
    total = f"{rng.randint(2, 200)}.{rng.randint(0, 99):02d}"
    lines = [company, "(CO. REG 519537-X)", address, f"DATE: {date}", *items, f"TOTAL: {total}"]
    return "\n".join(lines), {"company": company, "date": date, "address": address, "total": total}


def synthetic_traffic(seed: int = 3) -> tuple[list[TrafficRow], dict[str, str]]:
    """Rows in time order, and the source template of each request id."""
    rng = random.Random(seed)
    made: list[tuple[str, str, str, str]] = []  # (source, system, user, response)
    for _ in range(300):
        intent = rng.choice(list(INTENTS))
        q = rng.choice(INTENTS[intent])
        q = (
            rng.choice(["", "", "Hi, ", "Hello! ", "Please help: "])
            + q
            + rng.choice(["", "?", " thanks"])
        )
        made.append(
            ("banking", SYSTEM, BANKING.format(q=q), rng.choice([intent, intent, f" {intent}."]))
        )
    for i in range(120):
        text, fields = _receipt(rng, chain=i % 3 == 0)
        answer = json.dumps(fields)
        made.append(
            (
                "sroie",
                SYSTEM,
                SROIE.format(r=text),
                f"```json\n{answer}\n```" if i % 7 == 0 else answer,
            )
        )
    for _ in range(60):
        review, label = rng.choice(REVIEWS)
        made.append(("sentiment", SYSTEM, SENTIMENT.format(r=review), label.capitalize()))
    for _ in range(40):
        ticket = rng.choice(TICKETS)
        made.append(
            (
                "summary",
                SYSTEM,
                SUMMARY.format(t=ticket),
                "The customer " + ticket.lower()[:40] + "...",
            )
        )
    for _ in range(30):
        made.append(
            (
                "chat",
                "You are a friendly companion.",
                rng.choice(CHATS),
                rng.choice(
                    ["Sure! Here is one.", "I am not sure, but let me think about it at length."]
                ),
            )
        )
    rng.shuffle(made)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    rows, source = [], {}
    for n, (src, system, user, response) in enumerate(made):
        rid = f"r{n:04d}"
        source[rid] = src
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        t_in, t_out = len(user.split()) * 2, len(response.split()) * 2
        rows.append(TrafficRow(
            request_id=rid, at=start + timedelta(seconds=30 * n), model="gpt-4o", status=200,
            stream=False, system=system, user=user, messages=json.dumps(messages), params="{}",
            response=response, tokens_in=t_in, tokens_out=t_out, latency_ms=400.0,
            cost_nusd=2500 * t_in + 10000 * t_out,
        ))  # fmt: skip
    return rows, source
