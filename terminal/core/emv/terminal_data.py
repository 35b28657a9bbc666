"""What the terminal tells the card: the applications it accepts (`SupportedAid`), the terminal
transaction qualifiers (TTQ, 9F66), the transaction's data objects (`TerminalParams`) and the
filling of a card's data object list (`build_dol`, EMV Book 3 5.4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from terminal.core import tlv


@dataclass(frozen=True, slots=True)
class SupportedAid:
    """An application the terminal accepts. `partial`: the card's AID may extend this one (ASI)."""

    aid: bytes
    scheme: str
    label: str = ""
    partial: bool = True


def _aid(hex_aid: str, scheme: str, label: str) -> SupportedAid:
    return SupportedAid(bytes.fromhex(hex_aid), scheme, label)


DEFAULT_AIDS: tuple[SupportedAid, ...] = (
    _aid("A0000000031010", "visa", "Visa credit/debit"),
    _aid("A0000000032010", "visa", "Visa Electron"),
    _aid("A0000000032020", "visa", "V PAY"),
    _aid("A0000000041010", "mastercard", "Mastercard credit/debit"),
    _aid("A0000000043060", "mastercard", "Maestro"),
    _aid("A000000333010101", "unionpay", "UnionPay debit"),
    _aid("A000000333010102", "unionpay", "UnionPay credit"),
    _aid("A000000333010103", "unionpay", "UnionPay quasi-credit"),
    _aid("A00000002501", "amex", "American Express"),
    _aid("A0000000651010", "jcb", "JCB"),
    _aid("A0000001523010", "discover", "Discover"),
    _aid("A0000001524010", "discover", "Discover Common Debit"),
    _aid("A0000002771010", "interac", "Interac"),
)


# -- terminal data -------------------------------------------------------------------------------

# TTQ (9F66) bits, EMV Book C-3 / Book A table 5-4
TTQ_QVSDC = 0x20  # byte 1 b6: EMV mode (qVSDC) supported
TTQ_OFFLINE_ONLY = 0x08  # byte 1 b4: offline-only reader
TTQ_ONLINE_PIN = 0x04  # byte 1 b3: online PIN supported
TTQ_SIGNATURE = 0x02  # byte 1 b2: signature supported
TTQ_ONLINE_CRYPTOGRAM = 0x80  # byte 2 b8: online cryptogram required
TTQ_CVM_REQUIRED = 0x40  # byte 2 b7: CVM required
TTQ_CDCVM = 0x40  # byte 3 b7: consumer device CVM supported


def terminal_ttq(*, online_required: bool, cvm_required: bool, online_capable: bool = True,
                 online_pin: bool = True, signature: bool = False) -> bytes:
    b1 = TTQ_QVSDC | (TTQ_ONLINE_PIN if online_pin else 0) | (TTQ_SIGNATURE if signature else 0)
    if not online_capable:
        b1 |= TTQ_OFFLINE_ONLY
    b2 = (TTQ_ONLINE_CRYPTOGRAM if online_required else 0) | (TTQ_CVM_REQUIRED if cvm_required else 0)
    return bytes([b1, b2, TTQ_CDCVM, 0x00])


def _bcd(number: int, nbytes: int) -> bytes:
    digits = str(number).rjust(nbytes * 2, "0")
    if len(digits) > nbytes * 2:
        raise ValueError(f"{number} does not fit {nbytes} BCD bytes")
    return bytes.fromhex(digits)


@dataclass(frozen=True)
class TerminalParams:
    """Everything the terminal tells the card about this transaction. Amounts in minor units."""

    amount: int
    currency_numeric: int
    country_numeric: int
    when: datetime
    unpredictable_number: bytes
    amount_other: int = 0
    transaction_type: int = 0x00  # 00 purchase, 20 refund
    floor_limit: int = 0
    cvm_required_limit: int = 0
    online_capable: bool = True
    terminal_type: int = 0x22  # attended, offline with online capability
    terminal_capabilities: bytes = bytes.fromhex("E0F0C8")
    additional_capabilities: bytes = bytes.fromhex("F000F0A001")
    merchant_name: str = ""
    aids: tuple[SupportedAid, ...] = DEFAULT_AIDS

    @property
    def online_required(self) -> bool:
        return self.amount > self.floor_limit  # EMV: above the floor limit (strictly)

    @property
    def cvm_required(self) -> bool:
        return self.amount >= self.cvm_required_limit  # EMV: at or above the CVM required limit

    def data(self) -> dict[int, bytes]:
        """Terminal-side data objects by tag, for PDOL and CDOL."""
        if len(self.unpredictable_number) != 4:
            raise ValueError("the unpredictable number is 4 bytes")
        ttq = terminal_ttq(online_required=self.online_required, cvm_required=self.cvm_required,
                           online_capable=self.online_capable)
        return {
            0x9F02: _bcd(self.amount, 6),
            0x9F03: _bcd(self.amount_other, 6),
            0x9F1A: _bcd(self.country_numeric, 2),
            0x5F2A: _bcd(self.currency_numeric, 2),
            0x9A: bytes.fromhex(self.when.strftime("%y%m%d")),
            0x9F21: bytes.fromhex(self.when.strftime("%H%M%S")),
            0x9C: bytes([self.transaction_type]),
            0x9F37: self.unpredictable_number,
            0x9F66: ttq,
            0x95: bytes(5),  # TVR: nothing found wrong by the terminal
            0x9F35: bytes([self.terminal_type]),
            0x9F33: self.terminal_capabilities,
            0x9F40: self.additional_capabilities,
            0x9F34: bytes.fromhex("3F0000"),  # CVM results: no CVM performed (yet)
            0x9F4E: self.merchant_name.encode("ascii", "replace")[:20],
            0x9F1E: b"WALLETPS",  # interface device serial number
            0x5F36: bytes([0x02]),
        }


# DOL value formats (EMV Book 3 5.4): numeric ones pad and truncate on the left
_NUMERIC_TAGS = frozenset({0x9F02, 0x9F03, 0x9F1A, 0x5F2A, 0x9A, 0x9F21, 0x9C, 0x9F35, 0x5F36, 0x9F41})


def build_dol(dol: Sequence[tuple[int, int]], data: dict[int, bytes]) -> bytes:
    """The concatenated values a DOL asks for; unknown tags are zeros (EMV Book 3 5.4)."""
    out = bytearray()
    for tag, length in dol:
        value = data.get(tag)
        if value is None or tlv.tag_is_constructed(tag):
            out += bytes(length)
        elif len(value) == length:
            out += value
        elif tag in _NUMERIC_TAGS:
            out += value[-length:] if len(value) > length else bytes(length - len(value)) + value
        else:
            out += value[:length] if len(value) > length else value + bytes(length - len(value))
    return bytes(out)


__all__ = [
    "DEFAULT_AIDS", "TTQ_CDCVM", "TTQ_CVM_REQUIRED", "TTQ_OFFLINE_ONLY", "TTQ_ONLINE_CRYPTOGRAM", "TTQ_ONLINE_PIN",
    "TTQ_QVSDC", "TTQ_SIGNATURE", "SupportedAid", "TerminalParams", "build_dol", "terminal_ttq",
]
