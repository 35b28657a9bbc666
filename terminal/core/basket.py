"""The items of one sale and the product catalogue they may come from: pure, integer money only.

A `Basket` is the list of line items the cashier builds on the checkout screen: each line has a
name, an optional product code, a unit price, a quantity and a tax rate. Prices include tax (as
on a shop's shelf label in China); the tax in a line is worked out from its amount:
`round_half_up(amount * rate / (100% + rate))`. Tax rates are whole hundredths of a percent
(`1300` is 13%), so no float is ever involved.

`Basket.details()` is what goes into the journaled row of the payment (signed with it): the lines,
the tax per rate and the items' total; receipts, exports and the day reports read it back.

A `Catalogue` is an optional list of products (code, name, price, tax rate), read from a TOML or
CSV file (`parse_catalogue`); the checkout looks products up by code or by part of the name as the
cashier types, and a product code typed or scanned adds the product.
"""

from __future__ import annotations

import csv
import io
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from terminal.core.money import MAX_MINOR_UNITS, Currency, Money, parse_amount
from terminal.errors import MoneyError, WalletposError

MAX_QUANTITY = 9999
MAX_LINES = 200
FULL_RATE = 10000  # 100% in hundredths of a percent


class BasketError(WalletposError):
    """A line item or a catalogue entry that cannot be used (says which and why)."""

    title = "Items"


def parse_tax_rate(text: str | int) -> int:
    """'13', '13%', '6.5', '0' (percent) -> hundredths of a percent (1300, 1300, 650, 0)."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise BasketError(f"a tax rate is a percentage like \"13\" or \"6.5\", not {text!r}")
    raw = str(text).strip().removesuffix("%").strip()
    whole, _, frac = raw.partition(".")
    if not whole.isdigit() or not whole.isascii() or (frac and not (frac.isdigit() and frac.isascii())) \
            or len(frac) > 2:
        raise BasketError(f"tax rate {text!r}: give a percentage with at most two decimals, e.g. 13 or 6.5")
    rate = int(whole) * 100 + int(frac.ljust(2, "0") or "0")
    if rate > FULL_RATE:
        raise BasketError(f"tax rate {text!r} is more than 100%")
    return rate


def format_tax_rate(rate: int) -> str:
    """1300 -> '13%', 650 -> '6.5%', 0 -> '0%'."""
    whole, frac = divmod(rate, 100)
    return f"{whole}%" if not frac else f"{whole}.{frac:02d}".rstrip("0") + "%"


def included_tax(amount: int, rate: int) -> int:
    """The tax included in a tax-inclusive `amount` (minor units) at `rate`, rounded half up."""
    if rate <= 0 or amount == 0:
        return 0
    sign = -1 if amount < 0 else 1
    num = abs(amount) * rate * 2
    den = (FULL_RATE + rate) * 2
    return sign * ((num + den // 2) // den)


@dataclass(frozen=True, slots=True)
class Product:
    code: str
    name: str
    price: Money
    tax_rate: int  # hundredths of a percent


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a sale: `quantity` times `unit`, tax included at `tax_rate`."""

    name: str
    unit: Money
    quantity: int = 1
    tax_rate: int = 0
    code: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.quantity <= MAX_QUANTITY:
            raise BasketError(f"a quantity is 1 to {MAX_QUANTITY}, not {self.quantity}")
        if not self.unit.is_positive:
            raise BasketError("an item's price must be more than zero")
        if self.unit.minor * self.quantity > MAX_MINOR_UNITS:
            raise BasketError("that line is too large")
        if not 0 <= self.tax_rate <= FULL_RATE:
            raise BasketError(f"a tax rate is 0 to 100%, not {format_tax_rate(self.tax_rate)}")

    @property
    def amount(self) -> Money:
        return Money(self.unit.minor * self.quantity, self.unit.currency)

    @property
    def tax(self) -> Money:
        return Money(included_tax(self.amount.minor, self.tax_rate), self.unit.currency)

    def to_detail(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "qty": self.quantity, "unit": self.unit.minor,
                "amount": self.amount.minor, "tax_rate": self.tax_rate, "tax": self.tax.minor}


@dataclass(frozen=True, slots=True)
class TaxLine:
    """The sales at one tax rate: their amount (tax included) and the tax in it."""

    rate: int
    gross: int
    tax: int

    def to_detail(self) -> dict[str, int]:
        return {"rate": self.rate, "gross": self.gross, "tax": self.tax}


def tax_lines(lines: Iterable[Line]) -> list[TaxLine]:
    """Tax per rate, lowest rate first (tax summed line by line, as each line shows it)."""
    by_rate: dict[int, list[int]] = {}
    for line in lines:
        totals = by_rate.setdefault(line.tax_rate, [0, 0])
        totals[0] += line.amount.minor
        totals[1] += line.tax.minor
    return [TaxLine(rate, gross, tax) for rate, (gross, tax) in sorted(by_rate.items())]


@dataclass(frozen=True, slots=True)
class Basket:
    """The line items of one sale (immutable: every change gives a new basket)."""

    currency: Currency
    lines: tuple[Line, ...] = ()

    @property
    def total(self) -> Money:
        return Money(sum(line.amount.minor for line in self.lines), self.currency)

    @property
    def tax(self) -> Money:
        return Money(sum(line.tax.minor for line in self.lines), self.currency)

    @property
    def count(self) -> int:
        """Pieces in the basket (quantities summed)."""
        return sum(line.quantity for line in self.lines)

    def add(self, line: Line) -> tuple[Basket, int]:
        """The basket with `line` added, and the index of the line that holds it: a product already
        in the basket at the same price gets its quantity raised instead of a second line."""
        if line.unit.currency != self.currency:
            raise BasketError(f"an item in {line.unit.currency.alpha} cannot go into a sale in {self.currency.alpha}")
        if line.code:
            for i, old in enumerate(self.lines):
                if old.code == line.code and old.unit == line.unit and old.tax_rate == line.tax_rate:
                    return self.set_quantity(i, old.quantity + line.quantity), i
        if len(self.lines) >= MAX_LINES:
            raise BasketError(f"a sale has at most {MAX_LINES} lines")
        basket = replace(self, lines=(*self.lines, line))
        basket._check_total()
        return basket, len(basket.lines) - 1

    def set_quantity(self, index: int, quantity: int) -> Basket:
        lines = list(self.lines)
        lines[index] = replace(lines[index], quantity=quantity)
        basket = replace(self, lines=tuple(lines))
        basket._check_total()
        return basket

    def replace_line(self, index: int, line: Line) -> Basket:
        lines = list(self.lines)
        lines[index] = line
        basket = replace(self, lines=tuple(lines))
        basket._check_total()
        return basket

    def remove(self, index: int) -> Basket:
        return replace(self, lines=self.lines[:index] + self.lines[index + 1:])

    def _check_total(self) -> None:
        if sum(line.amount.minor for line in self.lines) > MAX_MINOR_UNITS:
            raise BasketError("the sale's total would be too large")

    def details(self) -> dict[str, Any]:
        """What the journaled row of the payment keeps of the items (plain values, no floats)."""
        if not self.lines:
            return {}
        return {"items": [line.to_detail() for line in self.lines],
                "tax": [t.to_detail() for t in tax_lines(self.lines)],
                "items_total": self.total.minor}


def items_of(details: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The item lines a journaled row's details hold ([] when none, or when they are not readable)."""
    items = details.get("items")
    if not isinstance(items, list):
        return []
    return [i for i in items if isinstance(i, Mapping) and isinstance(i.get("amount"), int)
            and isinstance(i.get("qty"), int)]


def taxes_of(details: Mapping[str, Any]) -> list[TaxLine]:
    """The tax per rate a journaled row's details hold."""
    out = []
    for entry in details.get("tax") or ():
        if isinstance(entry, Mapping) and all(isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool)
                                              for k in ("rate", "gross", "tax")):
            out.append(TaxLine(entry["rate"], entry["gross"], entry["tax"]))
    return out


# ------------------------------------------------------------------------------------------------
# the catalogue


@dataclass(frozen=True)
class Catalogue:
    products: tuple[Product, ...] = ()
    source: str = ""
    _by_code: dict[str, Product] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self._by_code:
            self._by_code.update((p.code, p) for p in self.products)

    def __len__(self) -> int:
        return len(self.products)

    def by_code(self, code: str) -> Product | None:
        return self._by_code.get(code.strip())

    def search(self, text: str, limit: int = 8) -> list[Product]:
        """Products whose code is `text` or starts with it, then those whose name contains it (case
        and width of letters ignored), in catalogue order; at most `limit`."""
        needle = text.strip().casefold()
        if not needle:
            return list(self.products[:limit])
        exact = self._by_code.get(text.strip())
        found: list[Product] = [exact] if exact is not None else []
        for p in self.products:
            if len(found) >= limit:
                break
            if p is not exact and p.code.casefold().startswith(needle):
                found.append(p)
        for p in self.products:
            if len(found) >= limit:
                break
            if p not in found and needle in p.name.casefold():
                found.append(p)
        return found


def _product(entry: Mapping[str, Any], where: str, cur: Currency, decimal_sep: str) -> Product:
    def text(key: str) -> str:
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and key in ("code", "tax_rate"):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise BasketError(f"{where}: {key} is missing (every product needs code, name, price and tax_rate)")
        return value.strip()

    code, name = text("code"), text("name")
    if len(code) > 32 or any(c.isspace() for c in code):
        raise BasketError(f"{where}: code {code!r} must be 1 to 32 characters without spaces")
    if len(name) > 40:
        raise BasketError(f"{where}: name {name!r} is longer than 40 characters")
    try:
        price = parse_amount(text("price"), cur, decimal_sep=decimal_sep, group_sep="")
    except MoneyError as exc:
        raise BasketError(f"{where}: price: {exc}") from None
    rate_text = entry.get("tax_rate", "0")
    try:
        rate = parse_tax_rate(rate_text if isinstance(rate_text, (str, int)) else repr(rate_text))
    except BasketError as exc:
        raise BasketError(f"{where}: {exc.message}") from None
    return Product(code, name, price, rate)


def parse_catalogue(text: str, fmt: str, cur: Currency, *, source: str = "catalogue",
                    decimal_sep: str = ".") -> Catalogue:
    """A catalogue from the text of a TOML file (`[[product]]` tables) or a CSV file (a header row
    `code,name,price,tax_rate`). Prices are text in the terminal currency ("12.50"), tax rates in
    percent ("13"); floats are refused. Codes must be unique."""
    entries: list[tuple[str, Mapping[str, Any]]] = []
    if fmt == "toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise BasketError(f"{source}: not valid TOML ({exc})") from None
        tables = data.get("product", [])
        if not isinstance(tables, list):
            raise BasketError(f"{source}: products are [[product]] tables")
        for i, entry in enumerate(tables, 1):
            if not isinstance(entry, dict):
                raise BasketError(f"{source}: product {i} is not a table")
            for key, value in entry.items():
                if isinstance(value, float):
                    raise BasketError(f"{source}: product {i}: {key} is a float; write it as text, e.g. \"12.50\"")
            entries.append((f"{source}: product {i}", entry))
    elif fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        missing = {"code", "name", "price"} - set(reader.fieldnames or ())
        if missing:
            raise BasketError(f"{source}: the header row must name code, name, price and tax_rate "
                              f"(missing: {', '.join(sorted(missing))})")
        for row in reader:
            entries.append((f"{source}: line {reader.line_num}", {k: v for k, v in row.items() if k}))
    else:
        raise BasketError(f"{source}: a catalogue is a .toml or a .csv file")
    products: list[Product] = []
    seen: set[str] = set()
    for where, entry in entries:
        product = _product(entry, where, cur, decimal_sep)
        if product.code in seen:
            raise BasketError(f"{where}: code {product.code} is given twice")
        seen.add(product.code)
        products.append(product)
    return Catalogue(tuple(products), source)


def line_from(product: Product, quantity: int = 1) -> Line:
    return Line(product.name, product.price, quantity, product.tax_rate, product.code)


def describe(lines: Sequence[Line]) -> str:
    """A short text of the lines, for logs and tests: '2 x tea @ 12.50; 1 x -'."""
    return "; ".join(f"{line.quantity} x {line.name or '-'} @ {line.unit.plain()}" for line in lines)


__all__ = [
    "MAX_QUANTITY", "Basket", "BasketError", "Catalogue", "Line", "Product", "TaxLine", "describe",
    "format_tax_rate", "included_tax", "items_of", "line_from", "parse_catalogue", "parse_tax_rate", "tax_lines",
    "taxes_of",
]
