"""Money as integer minor units plus an ISO 4217 currency. No floats anywhere.

`parse_amount` turns what a cashier keys ("12.3", "1,234.50") into `Money`; `format_money` turns
`Money` back into text for screens and receipts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from terminal.errors import MoneyError


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO 4217 currency: alphabetic code, numeric code and minor-unit exponent."""

    alpha: str
    numeric: int
    exponent: int

    @property
    def numeric_str(self) -> str:
        """The three-digit numeric code, as in EMV tag 5F2A and EMVCo QR field 53."""
        return f"{self.numeric:03d}"

    @property
    def symbol(self) -> str:
        return _SYMBOLS.get(self.alpha, self.alpha)

    def __str__(self) -> str:
        return self.alpha


# Active ISO 4217 currencies (alpha, numeric, minor units).
_ISO_4217: tuple[tuple[str, int, int], ...] = (
    ("AED", 784, 2), ("AFN", 971, 2), ("ALL", 8, 2), ("AMD", 51, 2), ("AOA", 973, 2),
    ("ARS", 32, 2), ("AUD", 36, 2), ("AWG", 533, 2), ("AZN", 944, 2), ("BAM", 977, 2),
    ("BBD", 52, 2), ("BDT", 50, 2), ("BGN", 975, 2), ("BHD", 48, 3), ("BIF", 108, 0),
    ("BMD", 60, 2), ("BND", 96, 2), ("BOB", 68, 2), ("BRL", 986, 2), ("BSD", 44, 2),
    ("BTN", 64, 2), ("BWP", 72, 2), ("BYN", 933, 2), ("BZD", 84, 2), ("CAD", 124, 2),
    ("CDF", 976, 2), ("CHF", 756, 2), ("CLF", 990, 4), ("CLP", 152, 0), ("CNY", 156, 2),
    ("COP", 170, 2), ("CRC", 188, 2), ("CUP", 192, 2), ("CVE", 132, 2), ("CZK", 203, 2),
    ("DJF", 262, 0), ("DKK", 208, 2), ("DOP", 214, 2), ("DZD", 12, 2), ("EGP", 818, 2),
    ("ERN", 232, 2), ("ETB", 230, 2), ("EUR", 978, 2), ("FJD", 242, 2), ("FKP", 238, 2),
    ("GBP", 826, 2), ("GEL", 981, 2), ("GHS", 936, 2), ("GIP", 292, 2), ("GMD", 270, 2),
    ("GNF", 324, 0), ("GTQ", 320, 2), ("GYD", 328, 2), ("HKD", 344, 2), ("HNL", 340, 2),
    ("HTG", 332, 2), ("HUF", 348, 2), ("IDR", 360, 2), ("ILS", 376, 2), ("INR", 356, 2),
    ("IQD", 368, 3), ("IRR", 364, 2), ("ISK", 352, 0), ("JMD", 388, 2), ("JOD", 400, 3),
    ("JPY", 392, 0), ("KES", 404, 2), ("KGS", 417, 2), ("KHR", 116, 2), ("KMF", 174, 0),
    ("KPW", 408, 2), ("KRW", 410, 0), ("KWD", 414, 3), ("KYD", 136, 2), ("KZT", 398, 2),
    ("LAK", 418, 2), ("LBP", 422, 2), ("LKR", 144, 2), ("LRD", 430, 2), ("LSL", 426, 2),
    ("LYD", 434, 3), ("MAD", 504, 2), ("MDL", 498, 2), ("MGA", 969, 2), ("MKD", 807, 2),
    ("MMK", 104, 2), ("MNT", 496, 2), ("MOP", 446, 2), ("MRU", 929, 2), ("MUR", 480, 2),
    ("MVR", 462, 2), ("MWK", 454, 2), ("MXN", 484, 2), ("MYR", 458, 2), ("MZN", 943, 2),
    ("NAD", 516, 2), ("NGN", 566, 2), ("NIO", 558, 2), ("NOK", 578, 2), ("NPR", 524, 2),
    ("NZD", 554, 2), ("OMR", 512, 3), ("PAB", 590, 2), ("PEN", 604, 2), ("PGK", 598, 2),
    ("PHP", 608, 2), ("PKR", 586, 2), ("PLN", 985, 2), ("PYG", 600, 0), ("QAR", 634, 2),
    ("RON", 946, 2), ("RSD", 941, 2), ("RUB", 643, 2), ("RWF", 646, 0), ("SAR", 682, 2),
    ("SBD", 90, 2), ("SCR", 690, 2), ("SDG", 938, 2), ("SEK", 752, 2), ("SGD", 702, 2),
    ("SHP", 654, 2), ("SLE", 925, 2), ("SOS", 706, 2), ("SRD", 968, 2), ("SSP", 728, 2),
    ("STN", 930, 2), ("SVC", 222, 2), ("SYP", 760, 2), ("SZL", 748, 2), ("THB", 764, 2),
    ("TJS", 972, 2), ("TMT", 934, 2), ("TND", 788, 3), ("TOP", 776, 2), ("TRY", 949, 2),
    ("TTD", 780, 2), ("TWD", 901, 2), ("TZS", 834, 2), ("UAH", 980, 2), ("UGX", 800, 0),
    ("USD", 840, 2), ("UYU", 858, 2), ("UYW", 927, 4), ("UZS", 860, 2), ("VES", 928, 2),
    ("VND", 704, 0), ("VUV", 548, 0), ("WST", 882, 2), ("XAF", 950, 0), ("XCD", 951, 2),
    ("XCG", 532, 2), ("XOF", 952, 0), ("XPF", 953, 0), ("YER", 886, 2), ("ZAR", 710, 2),
    ("ZMW", 967, 2), ("ZWG", 924, 2),
)

_BY_ALPHA: dict[str, Currency] = {a: Currency(a, n, e) for a, n, e in _ISO_4217}
_BY_NUMERIC: dict[int, Currency] = {c.numeric: c for c in _BY_ALPHA.values()}

_SYMBOLS = {
    "CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "JP¥", "HKD": "HK$", "KRW": "₩",
    "SGD": "S$", "TWD": "NT$", "MOP": "MOP$", "AUD": "A$", "CAD": "CA$", "THB": "฿", "VND": "₫",
    "INR": "₹", "BRL": "R$",
}

# The largest amount the terminal handles: EMV amounts are n12 (twelve digits of minor units).
MAX_MINOR_UNITS = 999_999_999_999


def currency(code: str | int) -> Currency:
    """Look up a currency by alphabetic ("CNY") or numeric (156, "156") ISO 4217 code."""
    if isinstance(code, bool):
        raise MoneyError(f"{code!r} is not a currency code")
    if isinstance(code, int) or (isinstance(code, str) and code.isdigit()):
        found = _BY_NUMERIC.get(int(code))
        if found is None:
            raise MoneyError(f"{code!r} is not an ISO 4217 numeric currency code")
        return found
    if isinstance(code, str):
        found = _BY_ALPHA.get(code.strip().upper())
        if found is None:
            raise MoneyError(f"{code!r} is not an ISO 4217 currency code (e.g. CNY, USD, EUR)")
        return found
    raise MoneyError(f"{code!r} is not a currency code")


def known_currency_codes() -> list[str]:
    return sorted(_BY_ALPHA)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in integer minor units of one currency (fen for CNY, cents for USD)."""

    minor: int
    currency: Currency

    def __post_init__(self) -> None:
        if type(self.minor) is not int:
            raise MoneyError(f"money needs integer minor units, got {type(self.minor).__name__}")
        if not isinstance(self.currency, Currency):
            raise MoneyError(f"money needs a Currency, got {self.currency!r}")
        if abs(self.minor) > MAX_MINOR_UNITS:
            raise MoneyError(f"amount {self.minor} minor units is beyond the 12-digit limit")

    @classmethod
    def zero(cls, cur: Currency) -> Money:
        return cls(0, cur)

    def _same(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise MoneyError(f"cannot combine money with {type(other).__name__}")
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")
        return other

    def __add__(self, other: Money) -> Money:
        return Money(self.minor + self._same(other).minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.minor - self._same(other).minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        return self.minor < self._same(other).minor

    def __le__(self, other: Money) -> bool:
        return self.minor <= self._same(other).minor

    def __gt__(self, other: Money) -> bool:
        return self.minor > self._same(other).minor

    def __ge__(self, other: Money) -> bool:
        return self.minor >= self._same(other).minor

    @property
    def is_positive(self) -> bool:
        return self.minor > 0

    def plain(self) -> str:
        """Amount without grouping or symbol, '.' as decimal mark: '1234.50' (EMVCo QR field 54)."""
        return _digits(self.minor, self.currency.exponent, ".", "")

    def __str__(self) -> str:
        return f"{self.currency.alpha} {self.plain()}"


def _digits(minor: int, exponent: int, decimal_sep: str, group_sep: str) -> str:
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exponent)
    whole_text = f"{whole:,}".replace(",", group_sep) if group_sep else str(whole)
    if exponent == 0:
        return sign + whole_text
    return f"{sign}{whole_text}{decimal_sep}{frac:0{exponent}d}"


Style = Literal["symbol", "code", "plain"]


def format_money(
    amount: Money, *, style: Style = "symbol", decimal_sep: str = ".", group_sep: str = ","
) -> str:
    """Text for screens and receipts: '¥1,234.50' (symbol), 'CNY 1,234.50' (code), '1,234.50' (plain)."""
    body = _digits(amount.minor, amount.currency.exponent, decimal_sep, group_sep)
    if style == "plain":
        return body
    if style == "code":
        return f"{amount.currency.alpha} {body}"
    if body.startswith("-"):
        return f"-{amount.currency.symbol}{body[1:]}"
    return f"{amount.currency.symbol}{body}"


def parse_amount(
    text: str,
    cur: Currency,
    *,
    decimal_sep: str = ".",
    group_sep: str = ",",
    allow_zero: bool = False,
) -> Money:
    """Parse a keyed or configured amount such as '12.3', '12.30' or '1,234.50' into Money.

    Grouping separators are optional but, when present, must sit every three digits. At most the
    currency's number of decimals is accepted; negative amounts are refused.
    """
    if not isinstance(text, str):
        raise MoneyError(f"an amount must be text like \"12.30\", got {type(text).__name__}")
    raw = text.strip()
    if not raw:
        raise MoneyError("no amount entered")
    if raw.startswith("-"):
        raise MoneyError(f"{text!r}: amounts cannot be negative")
    if raw.startswith("+"):
        raw = raw[1:]
    if decimal_sep in raw:
        whole, _, frac = raw.partition(decimal_sep)
        if decimal_sep in frac:
            raise MoneyError(f"{text!r} has more than one decimal mark {decimal_sep!r}")
        if not frac:
            raise MoneyError(f"{text!r} ends with the decimal mark; key the decimals or leave the mark out")
    else:
        whole, frac = raw, ""
    if group_sep and group_sep in whole:
        groups = whole.split(group_sep)
        if not (1 <= len(groups[0]) <= 3) or any(len(g) != 3 for g in groups[1:]):
            raise MoneyError(f"{text!r}: digit grouping {group_sep!r} must separate groups of three digits")
        whole = "".join(groups)
    if not whole:
        whole = "0"
    if not (whole.isascii() and whole.isdigit()) or (frac and not (frac.isascii() and frac.isdigit())):
        raise MoneyError(
            f"{text!r} is not an amount; use digits and {decimal_sep!r} for decimals, e.g. 12{decimal_sep}30"
        )
    exponent = cur.exponent
    if len(frac) > exponent:
        if exponent == 0:
            raise MoneyError(f"{text!r}: {cur.alpha} has no minor units, key whole amounts")
        raise MoneyError(f"{text!r} has {len(frac)} decimals; {cur.alpha} allows at most {exponent}")
    if len(whole.lstrip("0")) + exponent > 12:
        raise MoneyError(f"{text!r} is too large (at most 12 digits including decimals)")
    minor = int(whole) * 10**exponent + (int(frac.ljust(exponent, "0")) if exponent else 0)
    if minor == 0 and not allow_zero:
        raise MoneyError("the amount must be more than zero")
    return Money(minor, cur)
