"""How a config key is declared (`setting`: its default, its comment, its constraints) and checked
(the checks of values that a type alone does not describe: time zones, local times, currencies,
countries, URLs, devices, AIDs, keys), and the two questions the loader and the renderer ask of a
type. The keys themselves are declared in `terminal.config.schema`.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from dataclasses import field, is_dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from terminal.core.countries import country_numeric
from terminal.core.money import Money, currency
from terminal.errors import MoneyError

EMBEDDED = "<embedded defaults>"


def setting(
    default: Any,
    doc: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    pattern: str | None = None,
    allowed: str | None = None,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """Declare one config key: its default (as written in TOML), a comment, and its constraints."""
    return field(
        metadata={
            "default": default,
            "doc": doc,
            "minimum": minimum,
            "maximum": maximum,
            "pattern": pattern,
            "allowed": allowed,
            "check": check,
        }
    )


def section(doc: str) -> Callable[[type], type]:
    """Mark a dataclass as a TOML table with a comment."""

    def wrap(cls: type) -> type:
        cls.__section_doc__ = doc  # type: ignore[attr-defined]
        return cls

    return wrap


def check_timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "an IANA time zone name such as Asia/Shanghai or UTC"
    return None


def check_currency(value: str) -> str | None:
    try:
        currency(value)
    except MoneyError:
        return "an ISO 4217 alphabetic currency code such as CNY, HKD or USD"
    return None if value.isalpha() else "an alphabetic ISO 4217 code such as CNY"


def check_country(value: str) -> str | None:
    if len(value) == 2 and country_numeric(value) is not None:
        return None
    return "an ISO 3166-1 alpha-2 country code such as CN, HK or SG"


def check_backend_url(value: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "an http(s) URL such as https://wallet.example.com"
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        return "an http(s) URL such as https://wallet.example.com (no query or fragment)"
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return "an https URL: plain http is only allowed for a backend on this machine (127.0.0.1)"
    return None


def check_camera_source(value: str) -> str | None:
    if value.strip() != value or not value:
        return ("a device index (0), a device path (/dev/video0), a video file, an image, a folder of images, "
                "an rtsp:// URL or sim:")
    return None


def check_reader_device(value: str) -> str | None:
    if value == "sim:" or re.fullmatch(r"pcsc:.{0,120}", value) or re.fullmatch(r"nfc:(usb|udp|tty)(:[^\s]*)?", value):
        return None
    return "sim:, pcsc:<reader name pattern> (empty: the first reader), or nfc:<nfcpy device> such as " \
        "nfc:usb:072f:2200 or nfc:udp:localhost:54321"


def check_aid(value: str) -> str | None:
    return None if re.fullmatch(r"([0-9A-F]{2}){5,16}=[a-z0-9_]{1,16}", value) else (
        "AID as 10-32 uppercase hex digits, '=', the scheme name (e.g. \"A0000006021010=wallet\")")


def check_issuer_key(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9._-]{1,32}:[0-9a-f]{64}", value) else (
        "key-id:64 lowercase hex digits of the issuer's Ed25519 public key")


def check_gate_device(value: str) -> str | None:
    if value == "sim:" or re.fullmatch(r"serial:/[^\s@]{1,200}(@[0-9]{3,7})?", value):
        return None
    return "sim: (the simulated gate) or serial:<device>[@baud] (a relay board, e.g. serial:/dev/ttyUSB0@9600)"


def check_local_time(value: str) -> str | None:
    if value == "" or re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value):
        return None
    return "a local time as HH:MM on the 24-hour clock, such as \"03:30\", or \"\" for no automatic close"


def type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a section class (its keys' types)."""
    return typing.get_type_hints(cls)


def is_table(tp: Any) -> bool:
    """A config type written as a TOML table (a section dataclass; Money is a value, not a table)."""
    return isinstance(tp, type) and is_dataclass(tp) and tp is not Money
