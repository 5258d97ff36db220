"""Templates over step outputs: parsing, rendering, and what they refuse."""

from __future__ import annotations

import pytest

from slmstack import ConfigError, Prediction, Span
from slmstack.workflows.templates import Ref, parse, render, value

OUTPUTS = {
    "sentiment": Prediction(label="negative", confidence=0.8125),
    "entities": Prediction(spans=(Span("ORG", 0, 4, "Acme"), Span("DATE", 9, 14, "3 May"))),
    "record": Prediction(data={"total": "12.50", "n": 3}),
    "summary": Prediction(text="Short."),
}


def test_render_fields_and_literal_braces():
    parts = parse("{input} | {sentiment.label} {sentiment.confidence} | {entities.spans} | {{x}}")
    assert render(parts, "hi", OUTPUTS) == "hi | negative 0.81 | ORG: Acme; DATE: 3 May | {x}"
    assert render(parse("{record.data.total} {record.data}"), "", OUTPUTS) == (
        '12.50 {"total": "12.50", "n": 3}'
    )
    assert (
        render(parse("{summary} / {sentiment} / {missing}"), "", OUTPUTS) == "Short. / negative / "
    )


def test_value_keeps_raw_types():
    assert value(Ref("entities", "spans"), "", OUTPUTS) == [
        {"label": "ORG", "text": "Acme"},
        {"label": "DATE", "text": "3 May"},
    ]
    assert value(Ref("sentiment", "confidence"), "", OUTPUTS) == 0.8125


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{a.b.c.d}", "bad placeholder"),
        ("{sentiment.lable}", r"unknown field 'lable' .*did you mean 'label'"),
        ("{input.text}", "has no fields"),
        ("{x.label.y}", "only data has keys"),
        ("oops {", "unbalanced brace"),
        ("{__class__.__init__}", "unknown field '__init__'"),
    ],
)
def test_bad_templates(template, message):
    with pytest.raises(ConfigError, match=message):
        parse(template)
