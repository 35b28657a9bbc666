"""Line items, tax included and the catalogue (terminal.core.basket): pure, integer money."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.core.basket import (
    Basket,
    BasketError,
    Line,
    format_tax_rate,
    included_tax,
    line_from,
    parse_catalogue,
    parse_tax_rate,
    taxes_of,
)
from terminal.core.money import Money, currency

CNY = currency("CNY")


def yuan(minor: int) -> Money:
    return Money(minor, CNY)


def test_tax_rates_are_whole_hundredths_of_a_percent():
    assert [parse_tax_rate(t) for t in ("13", "13%", "6.5", "0", " 9.05 ")] == [1300, 1300, 650, 0, 905]
    assert [format_tax_rate(r) for r in (1300, 650, 0, 905)] == ["13%", "6.5%", "0%", "9.05%"]
    for bad in ("13.001", "-1", "abc", "101", "１３", 13.0):
        with pytest.raises(BasketError):
            parse_tax_rate(bad)  # type: ignore[arg-type]


def test_tax_included_in_a_price_rounds_half_up():
    assert included_tax(11300, 1300) == 1300  # 113.00 at 13% holds 13.00
    assert included_tax(100, 600) == 6  # 1.00 at 6%: 5.66 -> 6 fen
    assert included_tax(1000, 0) == 0
    assert included_tax(-11300, 1300) == -1300


@given(st.integers(1, 10**9), st.integers(0, 10000))
def test_tax_is_never_more_than_the_amount(amount, rate):
    tax = included_tax(amount, rate)
    assert 0 <= tax <= amount


def test_a_basket_adds_merges_sets_quantities_and_removes():
    tea = parse_catalogue('[[product]]\ncode = "6901"\nname = "green tea"\nprice = "12.50"\ntax_rate = "13"\n',
                          "toml", CNY).by_code("6901")
    assert tea is not None
    basket, i = Basket(CNY).add(line_from(tea))
    basket, j = basket.add(line_from(tea, 2))  # the same product again: one line, quantity 3
    assert (i, j, len(basket.lines), basket.lines[0].quantity) == (0, 0, 1, 3)
    basket, k = basket.add(Line("", yuan(500)))
    assert k == 1 and basket.total == yuan(4250) and basket.count == 4
    basket = basket.set_quantity(1, 2)
    assert basket.total == yuan(4750)
    details = basket.details()
    assert details["items"][0] == {"code": "6901", "name": "green tea", "qty": 3, "unit": 1250, "amount": 3750,
                                   "tax_rate": 1300, "tax": 431}
    assert details["tax"] == [{"rate": 0, "gross": 1000, "tax": 0}, {"rate": 1300, "gross": 3750, "tax": 431}]
    assert [t.tax for t in taxes_of(details)] == [0, 431]
    assert basket.remove(0).total == yuan(1000)
    with pytest.raises(BasketError):
        basket.set_quantity(0, 0)


def test_a_catalogue_from_csv_is_looked_up_by_code_and_name():
    text = "code,name,price,tax_rate\n6901234567892,Green tea 500ml,3.50,13\n0042,Rice cake,8.00,9\n" \
           "77,Newspaper,2.00,0\n"
    cat = parse_catalogue(text, "csv", CNY, source="cat.csv")
    assert len(cat) == 3 and cat.by_code("0042").price == yuan(800)
    assert [p.code for p in cat.search("004")] == ["0042"]  # code prefix
    assert [p.code for p in cat.search("TEA")] == ["6901234567892"]  # part of a name, any case
    assert [p.code for p in cat.search("50")] == ["6901234567892"]  # "500ml"
    assert [p.code for p in cat.search("77")] == ["77"]  # the exact code first


@pytest.mark.parametrize("text, fmt, problem", [
    ("code,name,price\n1,a,1.0.0\n", "csv", "price"),
    ("code,name,price\n1,a,1.00\n1,b,2.00\n", "csv", "given twice"),
    ('[[product]]\ncode = "1"\nname = "a"\nprice = 1.5\n', "toml", "float"),
    ("name,price\na,1.00\n", "csv", "missing: code"),
    ("code,name,price,tax_rate\n1,a,1.00,200\n", "csv", "more than 100%"),
])
def test_a_bad_catalogue_says_where_and_why(text, fmt, problem):
    with pytest.raises(BasketError, match=problem):
        parse_catalogue(text, fmt, CNY, source="cat")
