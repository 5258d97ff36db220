"""The field extractor's vendor-independent cues: money relations and line rivalry."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from extract_fixtures import tiny_encoder, toy_receipts
from slmstack import FieldExample, load
from slmstack.data.fields import parse_schema
from slmstack.errors import ArtifactError
from slmstack.skills import _field_features
from slmstack.skills._field_decode import decode_field
from slmstack.skills._field_features import (
    N_FACTS,
    MoneyRelations,
    candidates,
    features,
    split_lines,
)
from slmstack.skills._field_scoring import growth_probabilities
from slmstack.skills.fields import FieldExtractor


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


def test_money_relations_mark_sums_the_largest_sum_and_what_tendering_leaves():
    rel = MoneyRelations(["12.00", "0.72", "12.72", "20.00", "7.28", "2"])
    # 12.72 = 12.00 + 0.72 and 20.00 - 12.72 = 7.28: a total
    assert rel.facts(Decimal("12.72")) == [1.0, 0.0, 0.2, 1.0]
    assert rel.facts(Decimal("20.00"))[:3] == [1.0, 1.0, 0.0]  # the largest (tendered)
    assert rel.facts(Decimal("0.72")) == [0.0, 0.0, 0.8, 1.0]
    assert rel.facts(Decimal("2")) == [0.0, 0.0, 1.0, 0.0]  # no decimals: not money here


def test_amount_and_text_candidates_have_the_same_width():
    lines = split_lines("SHOP\nNET 10.00\nTAX 0.60\nTOTAL 10.60")
    [text, amount] = parse_schema({"company": "text", "total": "amount"})
    dim = 4
    xa, _ = features(amount, candidates(amount, lines), lines, lambda t: np.ones(dim), dim)
    xt, _ = features(text, candidates(text, lines), lines, lambda t: np.ones(dim), dim)
    assert xa.shape == (3, 3 * dim + N_FACTS) and xt.shape == (4, 3 * dim + N_FACTS)
    assert xa[2, -4:].tolist() == [1.0, 1.0, 0.0, 0.0]  # 10.60: a sum, the largest
    assert not xt[:, -MoneyRelations.N_FACTS :].any()


LABELS = ["TOTAL", "AMOUNT DUE", "GRAND TOTAL", "NETT", "TO PAY", "JUMLAH", "BALANCE DUE",
          "TOTAL SALES", "PAYABLE", "SUM DUE", "BILL", "CHARGE"]  # fmt: skip


def mixed_receipts(n: int, labels: list[str], seed: int) -> list[FieldExample]:
    """Receipts whose total sits among other sums in a shuffled order, under varied labels."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        net = Decimal(rng.randint(500, 9000)) / 100
        tax = (net * Decimal("0.06")).quantize(Decimal("0.01"))
        total = net + tax
        cash = Decimal(int(total) + rng.choice([1, 5, 10, 50]))
        rows = [f"NET {net}", f"TAX {tax}", f"{rng.choice(labels)} {total}",
                f"CASH {cash:.2f}", f"CHANGE {cash - total:.2f}"]  # fmt: skip
        rng.shuffle(rows)
        items = [f"ITEM {k} {rng.randint(1, 40)}.{rng.randint(0, 99):02d}" for k in range(3)]
        lines = ["SHOP", *items[: rng.randint(0, 3)], *rows, "THANK YOU"]
        out.append(FieldExample("\n".join(lines), {"total": str(total)}, f"mixed:{seed}:{i}"))
    return out


def total_accuracy(encoder_dir: Path) -> float:
    train = mixed_receipts(60, LABELS[:6], seed=2)
    test = mixed_receipts(40, LABELS[6:], seed=3)  # labels never seen in training
    fx = FieldExtractor(schema={"total": "amount"}, base=str(encoder_dir)).fit(train)
    preds = fx.predict([d.text for d in test])
    right = [
        p.data["fields"]["total"]["value"] == d.values["total"]
        for p, d in zip(preds, test, strict=True)
    ]
    return sum(right) / len(right)


def test_the_total_is_found_by_how_it_relates_to_other_sums(encoder_dir, monkeypatch):
    """Under labels never seen in training, in shuffled order, the sums give the total away."""
    assert total_accuracy(encoder_dir) >= 0.9  # 0.975 when written
    monkeypatch.setattr(
        _field_features.MoneyRelations, "facts", lambda self, value: [0.0] * self.N_FACTS
    )
    assert total_accuracy(encoder_dir) <= 0.7  # without the relations: 0.525 when written


def test_a_line_another_field_claims_more_does_not_join_the_value():
    text = "GOLDEN LEAF TRADING\nNO 290, JALAN AIR PANAS,\n53200 KUALA LUMPUR\nTEL 03-1234"
    lines = split_lines(text)
    address = parse_schema({"company": "text", "address": "text"})[1]
    cands = candidates(address, lines)
    p_company = np.array([0.9, 0.1, 0.0, 0.0])
    p_address = np.array([0.6, 0.95, 0.9, 0.1])
    alone, _ = decode_field(address, text, lines, cands, p_address, 0.5, 0.5)
    assert alone["value"].startswith("GOLDEN LEAF")  # without rivalry it grows over the name
    grow = growth_probabilities({"company": [p_company], "address": [p_address]})
    rec, span = decode_field(address, text, lines, cands, p_address, 0.5, 0.5, grow["address"][0])
    assert rec["value"] == "NO 290, JALAN AIR PANAS, 53200 KUALA LUMPUR"
    assert span is not None and text[span.start : span.end].startswith("NO 290")
    assert growth_probabilities({"address": [p_address]})["address"][0].tolist() == (
        p_address.tolist()
    )  # a field without rivals grows on its own probabilities


def test_the_extractor_uses_rivalry_between_its_text_fields(encoder_dir):
    schema = {"company": "text", "address": "text", "total": "amount", "date": "date"}
    fx = FieldExtractor(schema=schema, base=str(encoder_dir)).fit(toy_receipts(24))
    doc = toy_receipts(26)[25]
    scores = fx._scores([split_lines(doc.text)])
    _, p_company, _ = scores["company"][0]
    _, p_address, grow_address = scores["address"][0]
    claimed = p_company > p_address
    assert claimed[0]  # the shop's name line
    assert (grow_address[claimed] == 0).all()
    assert (grow_address[~claimed] == p_address[~claimed]).all()


def test_a_model_saved_with_the_old_feature_layout_asks_to_be_retrained(encoder_dir, tmp_path):
    fx = FieldExtractor(schema={"total": "amount"}, base=str(encoder_dir), val_fraction=0.0)
    folder = fx.fit(mixed_receipts(12, LABELS, seed=0)).save(tmp_path / "fx")
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    assert load(folder).predict(["SHOP\nTOTAL 9.50"])[0].data["fields"]["total"]
    assert config.pop("feature_layout") == 2
    config_path.write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="feature layout 1.*train it again"):
        load(folder)
