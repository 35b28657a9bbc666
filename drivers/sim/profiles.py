"""Virtual contactless card profiles: pure data, no behaviour.

A `CardProfile` says what one card carries (PAN, expiry, cardholder name, its applications) and how it
misbehaves (no PPSE, a blocked application, a refused GET PROCESSING OPTIONS, malformed answers, leaving
the field after a few commands). `drivers.sim.cards.VirtualCard` turns a profile into the APDU answers.

Each `AppProfile` follows one of two card kernels:

- ``"qvsdc"`` (Visa qVSDC, UnionPay qUICS): the FCI carries a PDOL, GET PROCESSING OPTIONS is answered
  in format 2 (tag 77) with the cryptogram already in it, and the AFL names ONE record (SFI 1, record 1)
  holding PAN, expiry, issuer country and cardholder name. A transaction is 3 + 1 commands.
- ``"mchip"`` (Mastercard M/Chip): no PDOL (GPO data 83 00), GPO answered in format 1 (tag 80: AIP +
  AFL), the AFL names two records (SFI 1, records 1-2) holding track 2, PAN, expiry, CDOL1 and CDOL2,
  and the card needs GENERATE AC. A transaction is 4 + 2 commands.

Every PAN here is a Luhn-valid test number. Status words are ints (0x9000).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dol = tuple[tuple[int, int], ...]
"""A data object list: (tag, length) pairs in card order (PDOL, CDOL1, CDOL2)."""

Kernel = Literal["qvsdc", "mchip"]

AID_VISA = "A0000000031010"
AID_MASTERCARD = "A0000000041010"
AID_UNIONPAY_DEBIT = "A000000333010101"
AID_UNSUPPORTED = "A0000009999999"

VISA_PDOL: Dol = (
    (0x9F66, 4),  # terminal transaction qualifiers
    (0x9F02, 6),  # amount, authorised
    (0x9F03, 6),  # amount, other
    (0x9F1A, 2),  # terminal country code
    (0x95, 5),  # terminal verification results
    (0x5F2A, 2),  # transaction currency code
    (0x9A, 3),  # transaction date
    (0x9C, 1),  # transaction type
    (0x9F37, 4),  # unpredictable number
)

# qUICS asks for the same data in its own order, plus DF69 (SM algorithm support, a UnionPay tag the
# terminal does not know and must fill with zeros).
UNIONPAY_PDOL: Dol = (
    (0x9F66, 4),
    (0x9F02, 6),
    (0x9F03, 6),
    (0x9F1A, 2),
    (0x95, 5),
    (0x5F2A, 2),
    (0x9A, 3),
    (0x9C, 1),
    (0x9F37, 4),
    (0xDF69, 1),
)

MASTERCARD_CDOL1: Dol = (
    (0x9F02, 6),
    (0x9F03, 6),
    (0x9F1A, 2),
    (0x95, 5),
    (0x5F2A, 2),
    (0x9A, 3),
    (0x9C, 1),
    (0x9F37, 4),
    (0x9F35, 1),  # terminal type
    (0x9F45, 2),  # data authentication code
    (0x9F4C, 8),  # ICC dynamic number
    (0x9F34, 3),  # CVM results
)

MASTERCARD_CDOL2: Dol = (
    (0x91, 10),  # issuer authentication data
    (0x8A, 2),  # authorisation response code
    (0x95, 5),
    (0x9F37, 4),
    (0x9F4C, 8),
)

# historical bytes of the ATS, as PC/SC part 3 puts them into a contactless ATR (3B 8n 80 01 ... TCK)
DEFAULT_HISTORICAL_BYTES = "0031C173C8400000 9000".replace(" ", "")


@dataclass(frozen=True)
class AppProfile:
    """One payment application on the card (one PPSE entry, one SELECT AID)."""

    aid: str
    label: str
    kernel: Kernel = "qvsdc"
    priority: int | None = None  # tag 87 (1 = highest); None = no 87 in PPSE and FCI
    pdol: Dol = ()  # empty: no 9F38 in the FCI, GPO data 83 00
    aip: str = "2000"
    ctq: str = "8000"  # card transaction qualifiers (9F6C), qvsdc only
    iad: str = "06011203A00000"  # issuer application data (9F10)
    # qvsdc: the cryptogram type in the GPO answer. mchip: the most the card agrees to in GENERATE AC
    # (it answers the lower of this and what was asked; TC > ARQC > AAC): 0x40 TC, 0x80 ARQC, 0x00 AAC
    cid: int = 0x80
    cdol1: Dol = ()
    cdol2: Dol = ()
    name_tag: int | None = 0x5F20  # where the record puts the cardholder name; None = no name
    language: str = "en"
    pan: str | None = None  # None: the card's PAN
    in_ppse: bool = True
    select_sw: int = 0x9000  # 6A81: blocked (SELECT refused)
    gpo_sw: int = 0x9000  # 6985: GET PROCESSING OPTIONS refused


@dataclass(frozen=True)
class CardProfile:
    """One virtual card: its data, its applications and its faults."""

    name: str
    pan: str
    expiry: str  # YYMMDD (5F24); track 2 carries YYMM
    apps: tuple[AppProfile, ...]
    cardholder_name: str = "TEST/CARDHOLDER"
    effective: str = "240101"  # YYMMDD (5F25)
    issuer_country: str = "0840"  # 5F28, numeric ISO 3166 as 4 BCD digits
    pan_sequence: int = 1  # 5F34
    service_code: str = "201"
    ppse: bool = True  # False: SELECT 2PAY.SYS.DDF01 answers 6A82
    garbage: bool = False  # PPSE answer with a length past the end; SELECT AID answers 4 non-TLV bytes
    remove_after: int | None = None  # the card leaves the field after answering this many commands
    atc: int = 0  # application transaction counter before the first GPO (each GPO adds one)
    pin_try_counter: int = 3  # GET DATA 9F17
    uid: str = ""  # hex, 4 or 7 bytes; empty: 7 bytes derived from the name (stable)
    historical_bytes: str = DEFAULT_HISTORICAL_BYTES


VISA_APP = AppProfile(aid=AID_VISA, label="VISA CREDIT", kernel="qvsdc", priority=1, pdol=VISA_PDOL,
                      aip="2000", ctq="8000")
MASTERCARD_APP = AppProfile(aid=AID_MASTERCARD, label="MASTERCARD", kernel="mchip", priority=1, pdol=(),
                            aip="1980", iad="0110A00000000000000000000000000000FF",
                            cdol1=MASTERCARD_CDOL1, cdol2=MASTERCARD_CDOL2)
UNIONPAY_APP = AppProfile(aid=AID_UNIONPAY_DEBIT, label="UnionPay Debit", kernel="qvsdc", priority=1,
                          pdol=UNIONPAY_PDOL, aip="0080", ctq="0000", iad="07010103A00000010A01000000000000",
                          name_tag=None, language="zh")

PAN_VISA = "4761739001010010"
PAN_MASTERCARD = "5413330089010434"
PAN_UNIONPAY = "6212345678901232"
FUTURE_EXPIRY = "321231"
PAST_EXPIRY = "231231"


def _visa_like(name: str, pan: str, **fields: object) -> CardProfile:
    return CardProfile(name=name, pan=pan, expiry=FUTURE_EXPIRY, apps=(VISA_APP,), **fields)  # type: ignore[arg-type]


PROFILES: dict[str, CardProfile] = {
    "visa": _visa_like("visa", PAN_VISA),
    "mastercard": CardProfile(name="mastercard", pan=PAN_MASTERCARD, expiry=FUTURE_EXPIRY,
                              apps=(MASTERCARD_APP,), cardholder_name="TEST/MASTERCARD"),
    "unionpay": CardProfile(name="unionpay", pan=PAN_UNIONPAY, expiry=FUTURE_EXPIRY, apps=(UNIONPAY_APP,),
                            issuer_country="0156"),
    # PPSE order is not priority order: the terminal has to sort by tag 87 (1 first, none last)
    "multi_aid": CardProfile(
        name="multi_aid", pan="4761739001010028", expiry=FUTURE_EXPIRY,
        apps=(
            AppProfile(aid=AID_UNSUPPORTED, label="LOYALTY", kernel="qvsdc", priority=None, pdol=VISA_PDOL),
            AppProfile(aid=AID_UNIONPAY_DEBIT, label="UnionPay Debit", kernel="qvsdc", priority=2,
                       pdol=UNIONPAY_PDOL, aip="0080", ctq="0000", name_tag=None, pan="6212345678901240"),
            AppProfile(aid=AID_VISA, label="VISA DEBIT", kernel="qvsdc", priority=1, pdol=VISA_PDOL),
        )),
    "no_ppse": _visa_like("no_ppse", "4761739001010036", ppse=False),
    "expired": CardProfile(name="expired", pan="4761739001010044", expiry=PAST_EXPIRY, effective="201231",
                           apps=(VISA_APP,)),
    "denied": _visa_like("denied", "4761739001010051"),
    "blocked": CardProfile(name="blocked", pan="4761739001010069", expiry=FUTURE_EXPIRY,
                           apps=(AppProfile(aid=AID_VISA, label="VISA CREDIT", priority=1, pdol=VISA_PDOL,
                                            select_sw=0x6A81),)),
    "gpo_refused": CardProfile(name="gpo_refused", pan="4761739001010077", expiry=FUTURE_EXPIRY,
                               apps=(AppProfile(aid=AID_VISA, label="VISA CREDIT", priority=1, pdol=VISA_PDOL,
                                                gpo_sw=0x6985),)),
    "garbage": _visa_like("garbage", "4761739001010085", garbage=True),
    "pulled": _visa_like("pulled", "4761739001010093", remove_after=3),
}
