"""Tiny data and a tiny encoder for the extraction-skill tests (fast on 2 cores)."""

from __future__ import annotations

from pathlib import Path

from slmstack.data.tagging import TaggedExample

NAMES = ["Anna", "Bruno", "Carla", "Dieter", "Emma", "Farid", "Gina", "Hugo"]
CITIES = ["Paris", "Berlin", "Madrid", "Oslo", "Rome", "Vienna", "Lisbon", "Prague"]


def tiny_encoder(folder: Path) -> Path:
    """A 2-layer, 32-wide BERT with the MiniLM tokenizer: learns toy patterns in seconds."""
    from transformers import BertConfig, BertModel

    from slmstack.models import resolve
    from slmstack.models.encoder import load_tokenizer

    if (folder / "model.safetensors").is_file():
        return folder
    tokenizer = load_tokenizer(resolve("minilm").path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def toy_sentences(n: int = 32) -> list[TaggedExample]:
    """Sentences with people (PER) and cities (LOC); casing is the cue to learn."""
    out = []
    for i in range(n):
        name, city = NAMES[i % len(NAMES)], CITIES[(i * 3 + 1) % len(CITIES)]
        if i % 2:
            toks = [name, "flew", "to", city, "on", "monday", "."]
            tags = ["B-PER", "O", "O", "B-LOC", "O", "O", "O"]
        else:
            toks = ["yesterday", name, "Smith", "visited", city, "."]
            tags = ["O", "B-PER", "I-PER", "O", "B-LOC", "O"]
        out.append(TaggedExample.from_tokens(toks, tags))
    return out


SHOPS = ["ACME TRADING SDN BHD", "KEDAI BUKU MAJU", "SUNRISE BAKERY", "GOLDEN LEAF CAFE",
         "PASAR MINI JAYA", "URBAN HARDWARE CO", "BLUE OCEAN MART", "HAPPY PETS STORE"]  # fmt: skip
STREETS = ["NO 12, JALAN MERDEKA", "LOT 5, JALAN BUNGA RAYA", "NO 3, JALAN SAGU 18",
           "22, JALAN TUN RAZAK", "7, LORONG MAWAR 2", "NO 88, JALAN PUDU"]  # fmt: skip
TOWNS = ["81100 JOHOR BAHRU", "50450 KUALA LUMPUR", "10200 PENANG", "80000 MELAKA"]


def toy_receipts(n: int = 24, *, with_date: bool = True):
    """Receipts: shop line, 2 address lines, date, items, subtotal, TOTAL, cash."""
    from slmstack.data.fields import FieldExample

    out = []
    for i in range(n):
        shop, street, town = SHOPS[i % 8], STREETS[i % 6], TOWNS[i % 4]
        day, month = 1 + (i * 7) % 28, 1 + i % 12
        price_a, price_b = 3 + i % 5, 10 + (i * 3) % 17
        total = f"{price_a + price_b}.{(i * 13) % 100:02d}"
        lines = [shop, f"(REG {100000 + i}-X)", street + ",", town, "TAX INVOICE"]
        if with_date:
            lines.append(f"DATE: {day:02d}/{month:02d}/2019   TIME: 1{i % 10}:2{i % 6}")
        lines += [f"ITEM A   {price_a}.00", f"ITEM B   {price_b}.{(i * 13) % 100:02d}",
                  f"SUBTOTAL   {total}", f"TOTAL RM {total}", f"CASH   {int(float(total)) + 10}.00",
                  f"CHANGE   {10 - float(total) % 1:.2f}", "THANK YOU, PLEASE COME AGAIN"]  # fmt: skip
        values = {
            "company": shop,
            "address": f"{street}, {town}",
            "date": f"{day:02d}/{month:02d}/2019" if with_date else None,
            "total": total,
        }
        out.append(FieldExample("\n".join(lines), values, f"toy:{i}"))
    return out
