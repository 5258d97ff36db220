"""Tiny labelled data written for the tests."""

from slmstack import Example

INTENTS = {
    "card": [
        "where is my new card",
        "my card has not arrived yet",
        "card still not delivered",
        "when will my card come",
        "I am waiting for my debit card",
        "has my card been sent",
        "the card you posted never came",
        "track my card delivery",
    ],
    "refund": [
        "I want a refund",
        "give me my money back",
        "please refund my order",
        "how do I get reimbursed",
        "refund the payment please",
        "return the money to me",
        "I need my refund processed",
        "can I have a refund for this",
    ],
    "password": [
        "how do I reset my password",
        "I forgot my password",
        "change my login password",
        "password reset link not working",
        "cannot remember my password",
        "help me set a new password",
        "my password expired",
        "update my password",
    ],
}

TRAIN = [Example(t, label) for label, texts in INTENTS.items() for t in texts]
QUERIES = ["the card never showed up", "money back please", "I lost my password", "hello"]


def write_csv(path, examples=TRAIN):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for ex in examples:
            w.writerow([ex.text, ex.label])
    return path
