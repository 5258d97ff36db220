"""Rule packs: the shipped ones load, bad ones fail with line numbers; field rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmstack import ConfigError
from slmstack.compliance import check_fields, load_pack, parse_pack
from slmstack.compliance.fields import combine
from slmstack.compliance.rules import SHIPPED, FieldRule, NLIRule
from slmstack.errors import RulePackError


def test_shipped_packs_load():
    packs = {name: load_pack(name) for name in SHIPPED}
    nda = packs["nda"]
    assert len(nda.rules) == 17 and all(isinstance(r, NLIRule) for r in nda.rules)
    assert {r.id for r in nda.rules} == {
        f"nda-{i}" for i in (1, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 15, 16, 17, 18, 19, 20)
    }
    assert next(r for r in nda.rules if r.id == "nda-4").hypothesis.startswith(
        "Receiving Party shall not use any Confidential Information"
    )
    gdpr = packs["gdpr-art28"]
    assert all(r.source.startswith("GDPR Art.") for r in gdpr.rules)
    assert {"GDPR Art. 28(3)(a)", "GDPR Art. 28(3)(h)"} <= {r.source for r in gdpr.rules}
    assert all(isinstance(r, FieldRule) for r in packs["payment-terms"].rules)


BAD = """\
name: broken
rules:
  - id: r1
    hypothesis: "The processor shall notify breaches."
    require: entaild
    source: "Art. 33"
  - id: r2
    hypothesis: "Something."
    require: absent
    sevrity: high
    source: "x"
  - id: r1
    check: due_within_days
    fields: [date]
    source: "y"
  - id: r4
    source: "z"
"""


def test_every_problem_is_reported_with_its_line():
    with pytest.raises(RulePackError) as info:
        parse_pack(BAD, "bad.yaml")
    message = str(info.value)
    assert "rule pack bad.yaml has 4 errors" in message
    assert (
        "bad.yaml:5: rules[0].require: 'entaild' is not allowed; use one of 'entailed'" in message
    )
    assert (
        "bad.yaml:10: rules[1].sevrity: unknown key 'sevrity' (did you mean 'severity'?)" in message
    )
    assert (
        "bad.yaml:12: rules[2]: due_within_days needs `fields: [ISSUE_DATE, DUE_DATE]`" in message
    )
    assert "bad.yaml:16: rules[3]: a rule needs exactly one of `hypothesis:`" in message


def test_duplicate_ids_and_keys_and_top_level():
    dup = (
        "name: d\nrules:\n  - {id: a, hypothesis: abc, require: absent, source: s}\n"
        "  - {id: a, hypothesis: abd, require: absent, source: s}\n"
    )
    with pytest.raises(RulePackError, match=r"x.yaml:4: rules\[1\].id: duplicate rule id 'a'"):
        parse_pack(dup, "x.yaml")
    with pytest.raises(ConfigError, match=r"x.yaml:2: top level: duplicate key 'name'"):
        parse_pack("name: a\nname: b\nrules: []\n", "x.yaml")
    with pytest.raises(RulePackError, match=r"x.yaml:2: rules: List should have at least 1 item"):
        parse_pack("name: a\nrules: []\n", "x.yaml")
    with pytest.raises(ConfigError, match="x.yaml:2: not valid YAML"):
        parse_pack("name: [a\n", "x.yaml")
    with pytest.raises(RulePackError, match="unknown key 'rule'"):
        parse_pack("name: a\nrule: []\n", "x.yaml")


def test_missing_file_names_the_fix(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist; pass a YAML file or a shipped pack"):
        load_pack(tmp_path / "nope.yaml")
    (tmp_path / "p.yaml").write_text(
        "name: p\nrules:\n  - {id: a, check: present, fields: [x], source: s}\n"
    )
    assert load_pack(tmp_path / "p.yaml").rules[0].id == "a"


def test_field_rules():
    pack = load_pack("payment-terms")
    ok = {"date": {"value": "2024-03-01"}, "due_date": {"value": "2024-03-20"},
          "subtotal": "100.00", "tax": "20.00", "total": "120.00"}  # fmt: skip
    assert [r["flag"] for r in check_fields(pack, ok)] == ["ok", "ok", "ok"]
    late = {**ok, "due_date": "2024-05-01", "total": "125.00"}
    assert [r["flag"] for r in check_fields(pack, late)] == ["violated", "ok", "violated"]
    no_vat = {k: v for k, v in ok.items() if k != "tax"}
    flags = {r["id"]: (r["flag"], r["why"]) for r in check_fields(pack, no_vat)}
    assert flags["vat-shown"] == ("missing", "no value for tax")
    assert flags["totals-consistent"][0] == "missing"
    result = combine(pack, None, check_fields(pack, late))
    assert result.label == "violated" and result.data["counts"]["violated"] == 2
    assert "due-within-30-days" in (result.text or "")


def test_a_nan_field_is_missing_and_a_non_finite_amount_is_not_a_number():
    """Records from a DataFrame hold NaN for an empty cell: it was 'shown' (vat-shown ok)
    and crashed sum_equals with a bare decimal.InvalidOperation."""
    pack = load_pack("payment-terms")
    row = {"date": "2024-03-01", "due_date": "2024-03-20", "subtotal": 100.0,
           "tax": float("nan"), "total": 120.0}  # fmt: skip
    flags = {r["id"]: (r["flag"], r["why"]) for r in check_fields(pack, row)}
    assert flags["vat-shown"] == ("missing", "no value for tax")
    assert flags["totals-consistent"] == ("missing", "no value for tax")
    text = {**row, "tax": "20", "total": "Infinity"}
    flags = {r["id"]: (r["flag"], r["why"]) for r in check_fields(pack, text)}
    assert flags["totals-consistent"] == ("violated", "total 'Infinity' is not an amount")


def test_an_empty_date_cell_of_a_dataframe_is_missing_not_violated():
    # pandas gives NaT for an empty datetime cell: it read as "a date is not an ISO date"
    # and flagged the invoice as violating the payment term.
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"date": pd.to_datetime(["2024-03-01"]), "due_date": [pd.NaT]})
    row = frame.to_dict("records")[0]
    flags = {r["id"]: (r["flag"], r["why"]) for r in check_fields(load_pack("payment-terms"), row)}
    assert flags["due-within-30-days"] == ("missing", "no value for due_date")


@pytest.mark.parametrize(
    ("subtotal", "tax", "total"),
    [("100,00", "20,00", "120,00"), ("1.000,00", "200.00", "1,200.00"), ("$100.00", "20", "120")],
)
def test_amounts_are_read_as_the_extractor_reads_them(subtotal, tax, total):
    # A comma was dropped: "100,00" read as 10000, "1.000,00" as 1.0 (violated, wrongly),
    # and "$100.00" was not a number.
    row = {"subtotal": subtotal, "tax": tax, "total": total}
    flags = {r["id"]: (r["flag"], r["why"]) for r in check_fields(load_pack("payment-terms"), row)}
    assert flags["totals-consistent"][0] == "ok", flags["totals-consistent"]


@pytest.mark.parametrize(
    "row",
    [
        {"subtotal": {"value": "100.00", "currency": "EUR"},
         "tax": {"value": "20.00", "currency": "USD"},
         "total": {"value": "120.00", "currency": "EUR"}},
        {"subtotal": "100 EUR", "tax": "$20", "total": "120"},
    ],
)  # fmt: skip
def test_amounts_in_different_currencies_are_not_added(row):
    # 100 EUR + 20 USD was summed as 120 and the invoice's arithmetic reported ok.
    flags = {r["id"]: (r["flag"], r["why"]) for r in check_fields(load_pack("payment-terms"), row)}
    flag, why = flags["totals-consistent"]
    assert flag == "violated"
    assert "different currencies" in why and "EUR" in why and "USD" in why


def test_one_currency_or_none_is_summed():
    row = {"subtotal": {"value": "100.00", "currency": "EUR"}, "tax": "20.00",
           "total": {"value": "120.00", "currency": "EUR"}}  # fmt: skip
    flags = {r["id"]: r["flag"] for r in check_fields(load_pack("payment-terms"), row)}
    assert flags["totals-consistent"] == "ok"


def test_a_misspelt_hypothesis_or_check_key_is_named_with_its_line():
    # The rule only said it needs one of `hypothesis:` or `check:`, not which key was wrong.
    text = (
        "name: p\nrules:\n  - id: a\n    hypotesis: The party shall not disclose.\n"
        "    require: entailed\n    source: s\n  - id: b\n    chek: present\n"
        "    fields: [tax]\n    source: s\n"
    )
    with pytest.raises(RulePackError) as info:
        parse_pack(text, "p.yaml")
    message = str(info.value)
    assert "p.yaml:4: rules[0].hypotesis: unknown key 'hypotesis' (did you mean 'hypothesis'?)" in (
        message
    )
    assert "p.yaml:8: rules[1].chek: unknown key 'chek' (did you mean 'check'?)" in message


def test_a_missing_top_level_key_says_top_level():
    # It read "x.yaml: : missing required key 'rules'".
    with pytest.raises(RulePackError, match=r"x.yaml: top level: missing required key 'rules'"):
        parse_pack("name: a\n", "x.yaml")


def test_an_unreadable_date_or_amount_is_named_with_its_value():
    # "a date is not an ISO date" did not say which of the two, nor what was read.
    row = {"date": "2024-03-01", "due_date": "15/05/2024", "subtotal": "100", "tax": "n/a",
           "total": "120"}  # fmt: skip
    flags = {r["id"]: (r["flag"], r["why"]) for r in check_fields(load_pack("payment-terms"), row)}
    assert flags["due-within-30-days"] == (
        "violated", "due_date '15/05/2024' is not an ISO date (YYYY-MM-DD)"
    )
    assert flags["totals-consistent"] == ("violated", "tax 'n/a' is not an amount")
