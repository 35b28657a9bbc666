"""Money: integer minor units with an ISO 4217 currency; keyed amounts parsed, shown amounts formatted."""

from __future__ import annotations

import pytest

from terminal.core.money import Money, currency, format_money, parse_amount
from terminal.errors import MoneyError

CNY, JPY, BHD, EUR = currency("CNY"), currency("JPY"), currency("BHD"), currency("EUR")


def test_currency_lookup_by_alpha_and_numeric():
    assert CNY.numeric == 156 and CNY.exponent == 2 and CNY.numeric_str == "156"
    assert currency(156) is CNY or currency(156) == CNY
    assert currency("156") == CNY
    assert currency("usd").alpha == "USD"
    assert JPY.exponent == 0 and BHD.exponent == 3
    assert currency("008").alpha == "ALL"


@pytest.mark.parametrize("code", ["XYZ", "", "1000", 999, True, None])
def test_unknown_currency_is_a_clear_error(code):
    with pytest.raises(MoneyError, match="currency"):
        currency(code)


@pytest.mark.parametrize(
    ("text", "cur", "minor"),
    [
        ("12.3", CNY, 1230),
        ("12.30", CNY, 1230),
        ("12", CNY, 1200),
        ("0.01", CNY, 1),
        (".5", CNY, 50),
        ("1,234.50", CNY, 123450),
        ("1,234,567.89", CNY, 123456789),
        ("  7.00 ", CNY, 700),
        ("+7", CNY, 700),
        ("1234", JPY, 1234),
        ("1,234", JPY, 1234),
        ("1.234", BHD, 1234),
        ("9999999999.99", CNY, 999999999999),
    ],
)
def test_parse_amount(text, cur, minor):
    assert parse_amount(text, cur) == Money(minor, cur)


@pytest.mark.parametrize(
    ("text", "cur", "message"),
    [
        ("", CNY, "no amount entered"),
        ("-5", CNY, "cannot be negative"),
        ("12.345", CNY, "has 3 decimals; CNY allows at most 2"),
        ("12.5", JPY, "JPY has no minor units"),
        ("1.2.3", CNY, "more than one decimal mark"),
        ("12.", CNY, "ends with the decimal mark"),
        ("12,34.50", CNY, "groups of three digits"),
        ("1,2345", CNY, "groups of three digits"),
        ("12a", CNY, "is not an amount"),
        ("１２", CNY, "is not an amount"),  # full-width digits are not accepted silently
        ("1e3", CNY, "is not an amount"),
        ("0", CNY, "more than zero"),
        ("0.00", CNY, "more than zero"),
        ("99999999999.99", CNY, "too large"),
    ],
)
def test_parse_amount_errors_say_what_is_wrong(text, cur, message):
    with pytest.raises(MoneyError, match=message.replace(".", r"\.")):
        parse_amount(text, cur)


def test_parse_amount_with_comma_decimal_mark():
    assert parse_amount("1.234,50", EUR, decimal_sep=",", group_sep=".") == Money(123450, EUR)
    assert parse_amount("12,3", EUR, decimal_sep=",", group_sep=".") == Money(1230, EUR)
    assert parse_amount("1 234,50", EUR, decimal_sep=",", group_sep=" ") == Money(123450, EUR)


def test_format_money_styles():
    m = Money(123450, CNY)
    assert format_money(m) == "¥1,234.50"
    assert format_money(m, style="code") == "CNY 1,234.50"
    assert format_money(m, style="plain") == "1,234.50"
    assert format_money(Money(5, CNY)) == "¥0.05"
    assert format_money(Money(-150, CNY)) == "-¥1.50"
    assert format_money(Money(1234, JPY), style="code") == "JPY 1,234"
    assert format_money(Money(1234, BHD), style="code") == "BHD 1.234"
    assert format_money(Money(123450, EUR), decimal_sep=",", group_sep=".") == "€1.234,50"
    assert Money(123450, CNY).plain() == "1234.50"
    assert str(Money(7, CNY)) == "CNY 0.07"


def test_parse_then_format_round_trips():
    for text in ["0.01", "1.00", "12.34", "999.99", "1,000.00", "123,456,789.01"]:
        assert format_money(parse_amount(text, CNY), style="plain") == text


def test_money_refuses_floats_and_mixed_currencies():
    with pytest.raises(MoneyError, match="integer minor units"):
        Money(1.5, CNY)  # type: ignore[arg-type]
    with pytest.raises(MoneyError, match="integer minor units"):
        Money(True, CNY)  # type: ignore[arg-type]
    with pytest.raises(MoneyError, match="cannot combine CNY with USD"):
        Money(1, CNY) + Money(1, currency("USD"))
    with pytest.raises(MoneyError, match="cannot combine"):
        _ = Money(1, CNY) < Money(1, JPY)
    with pytest.raises(MoneyError, match="12-digit"):
        Money(10**12, CNY)


def test_money_arithmetic_and_order():
    a, b = Money(150, CNY), Money(50, CNY)
    assert a + b == Money(200, CNY) and a - b == Money(100, CNY) and -b == Money(-50, CNY)
    assert b < a and a >= b and b <= b and a > b
    assert Money.zero(CNY).minor == 0 and not Money.zero(CNY).is_positive
