from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from slmstack import ConfigError, DataError
from slmstack.data.normalizers import (
    Money,
    find_amounts,
    find_dates,
    normalize_text,
    parse_amount,
    parse_date,
)


@pytest.mark.parametrize(
    ("text", "order", "iso"),
    [
        ("03/04/2024", "DMY", "2024-04-03"),
        ("03/04/2024", "MDY", "2024-03-04"),
        ("2024-04-03", "MDY", "2024-04-03"),  # year first is never reordered
        ("3.4.24", "DMY", "2024-04-03"),
        ("31.12.99", "DMY", "1999-12-31"),
        ("25 Dec 2018", "DMY", "2018-12-25"),
        ("DATE: 25-DEC-18 10:22", "DMY", "2018-12-25"),
        ("December 25th, 2018", "MDY", "2018-12-25"),
        ("Dec 25, 2018", "DMY", "2018-12-25"),
        ("20180304", "DMY", "2018-03-04"),  # 8 digits, year first
        ("DATE/TIME : 20180428/191204", "DMY", "2018-04-28"),
        ("25032018", "DMY", "2018-03-25"),  # 8 digits, year last: the order decides
        ("03252018", "MDY", "2018-03-25"),
    ],
)
def test_dates(text, order, iso):
    assert find_dates(text, order=order)[0][2].isoformat() == iso


def test_invalid_date_in_declared_order_is_not_swapped():
    assert find_dates("13/25/2020", order="MDY") == []
    with pytest.raises(DataError, match=r"no date found in '13/25/2020' \(order MDY\)"):
        parse_date("13/25/2020", order="MDY")
    with pytest.raises(ConfigError, match="date order must be 'DMY', 'MDY' or 'YMD'"):
        find_dates("03/04/2024", order="DDD")  # type: ignore[arg-type]


def test_eight_digit_runs_that_are_not_dates_stay_numbers():
    for text in ["TEL: 03-55423228", "INV 12345678", "TOTAL 20180000", "GST 000381399040"]:
        assert find_dates(text) == [], text
    assert find_dates("03252018", order="DMY") == []  # month 25 does not exist
    assert [m.amount for _, _, m in find_amounts("INV 12345678")] == [Decimal(12345678)]
    assert find_amounts("20180304") == []  # a date is not an amount


def test_date_offsets_point_at_the_text():
    text = "Invoice 77 — issued 03/04/2024, due 2024-05-03"
    found = find_dates(text)
    assert [text[s:e] for s, e, _ in found] == ["03/04/2024", "2024-05-03"]
    assert found[1][2] == dt.date(2024, 5, 3)


@pytest.mark.parametrize(
    ("text", "amount", "currency"),
    [
        ("1.234,56 EUR", "1234.56", "EUR"),
        ("$1,234.56", "1234.56", "USD"),
        ("€ 1 234,56", "1234.56", "EUR"),
        ("RM 9.00", "9.00", "MYR"),
        ("TOTAL: 9.00", "9.00", None),
        ("1,234", "1234", None),
        ("1.234", "1.234", None),  # a single dot is a decimal mark
        ("12,50", "12.50", None),
        ("EUR 1.234.567,89", "1234567.89", "EUR"),
        ("-5.00", "-5.00", None),
        ("CHF 1'250.00", "1250.00", "CHF"),
    ],
)
def test_amounts(text, amount, currency):
    money = parse_amount(text)
    assert money == Money(Decimal(amount), currency)


def test_amounts_skip_dates_codes_and_times():
    text = "INV-2024 on 03/04/2024 at 10:22 total $1,234.56"
    found = find_amounts(text)
    assert [text[s:e] for s, e, _ in found] == ["$1,234.56"]


@pytest.mark.parametrize(
    ("text", "amount", "currency", "span"),
    [
        ("REFUND -$12.50", "-12.50", "USD", "-$12.50"),
        ("Discount −€5.00", "-5.00", "EUR", "−€5.00"),
        ("CREDIT -RM 9.00", "-9.00", "MYR", "-RM 9.00"),
        ("$-12.50", "-12.50", "USD", "$-12.50"),
    ],
)
def test_a_minus_before_the_currency_keeps_the_sign_and_the_currency(text, amount, currency, span):
    [(s, e, money)] = find_amounts(text)
    assert money == Money(Decimal(amount), currency)
    assert text[s:e] == span


@pytest.mark.parametrize(
    ("text", "amounts"),
    [
        ("TOTAL:12.50", [("12.50", None)]),  # OCR drops the space after a label's colon
        ("AMOUNT DUE:1,234.56", [("1234.56", None)]),
        ("Total:$12.50", [("12.50", "USD")]),
        ("TIME:10:22", []),  # a time is still not an amount
        ("10:22:33 CASH:5.00", [("5.00", None)]),
    ],
)
def test_an_amount_right_after_a_label_colon_is_found(text, amounts):
    assert [(str(m.amount), m.currency) for _, _, m in find_amounts(text)] == amounts


def test_a_month_first_date_is_not_an_amount_either():
    # find_amounts knows no date order: 12/28/2017 (MDY only) must not leave "12"
    text = "DATE 12/28/2017 DUE 04/15/2018 TOTAL 5.00"
    assert [text[s:e] for s, e, _ in find_amounts(text)] == ["5.00"]


def test_amount_default_currency_and_errors():
    assert parse_amount("9.00", default_currency="MYR").currency == "MYR"
    assert parse_amount("$9.00", default_currency="MYR").currency == "USD"
    with pytest.raises(DataError, match="no amount found in 'n/a'"):
        parse_amount("n/a")


def test_normalize_text():
    assert normalize_text("  ACME\tTrading   SDN BHD ") == "acme trading sdn bhd"


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("AEON CO. (M) BHD (126926-H)", "AEON CO. (M) BHD"),
        ("GARDENIA BAKERIES (KL) SDN BHD (139386 X)", "GARDENIA BAKERIES (KL) SDN BHD"),
        ("ABC SDN BHD (CO. NO. 123456-A)", "ABC SDN BHD"),
        ("SEGI CASH & CARRY (KL)", "SEGI CASH & CARRY (KL)"),  # letters only: part of the name
        ("UNIT 5 (BUILDING 12)", "UNIT 5 (BUILDING 12)"),  # a word, not a code
        ("(519537-X)", "(519537-X)"),  # a code alone on its line stays what it is
        ("NO 12, JALAN MERDEKA", "NO 12, JALAN MERDEKA"),
    ],
)
def test_drop_trailing_code_removes_only_a_registration_number_at_the_end(line, kept):
    from slmstack.data.normalizers import drop_trailing_code

    assert drop_trailing_code(line) == kept


@pytest.mark.parametrize(
    ("text", "amount", "currency", "span"),
    [
        ("TOTAL DUE (£114.00)", "-114.00", "GBP", "(£114.00)"),  # a credit note's total
        ("Credit (12.00)", "-12.00", None, "(12.00)"),
        ("Gutschrift (1.234,56 EUR)", "-1234.56", "EUR", "(1.234,56 EUR)"),
        ("Gutschrift 1.234,56- EUR", "-1234.56", "EUR", "1.234,56- EUR"),  # SAP's minus
        ("Refund 12.00-", "-12.00", None, "12.00-"),
        ("Items (3)", "3", None, "3"),  # a bracketed count is not a credit
        ("Fee 12.00-15.00", "12.00", None, "12.00"),  # a range, not a minus
    ],
)
def test_an_amount_in_brackets_or_with_a_trailing_minus_is_negative(text, amount, currency, span):
    s, e, money = find_amounts(text)[0]
    assert money == Money(Decimal(amount), currency)
    assert text[s:e] == span  # the evidence shows the sign


@pytest.mark.parametrize(
    "text",
    [
        "Total TTC 1\u00a0200,00\u00a0€",  # no-break space, as French invoices group thousands
        "Total TTC 1\u202f200,00 €",  # narrow no-break space (the French typographic one)
        "Total TTC 1\u2009200,00 €",  # thin space
    ],
)
def test_a_no_break_space_groups_thousands(text):
    [(s, e, money)] = find_amounts(text)
    assert money == Money(Decimal("1200.00"), "EUR")
    assert text[s:e].startswith("1")


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("Date : 15 août 2024", "2024-08-15"),  # French months as French writes them
        ("le 4 décembre 2024", "2024-12-04"),
        ("3 févr. 2024", "2024-02-03"),
        ("1er juillet 2024", "2024-07-01"),
        ("Datum: 3. März 2024", "2024-03-03"),  # German
        ("12 Dez. 2024", "2024-12-12"),
        ("1. Okt 2024", "2024-10-01"),
        ("Fecha: 5 de junio de 2024", "2024-06-05"),  # Spanish
    ],
)
def test_month_names_with_accents_and_their_usual_forms(text, iso):
    [(s, e, date)] = find_dates(text)
    assert date.isoformat() == iso
    assert text[s].isdigit() and text[e - 1].isdigit()
