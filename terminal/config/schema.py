"""The configuration schema: every key declared once, with its default and its documentation
(`setting(...)`), in one frozen dataclass per TOML table (`section(...)`), and `Config` holding
them all. `terminal.config.loader` reads TOML into these types and `terminal.config.defaults`
writes them out as config/default.toml.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import time as dt_time
from typing import Literal
from zoneinfo import ZoneInfo

from terminal.config.fields import (
    EMBEDDED,
    check_aid,
    check_backend_url,
    check_camera_source,
    check_country,
    check_currency,
    check_gate_device,
    check_issuer_key,
    check_local_time,
    check_reader_device,
    check_timezone,
    is_table,
    section,
    setting,
    type_hints,
)
from terminal.core.countries import country_numeric
from terminal.core.money import Currency, Money, currency

# --------------------------------------------------------------------------------------------
# Sections


@section("Who this terminal is, where it stands and what it sells in.")
@dataclass(frozen=True, kw_only=True)
class TerminalConfig:
    id: str = setting(
        "WPOS0001", "Terminal identifier assigned by the acquirer (EMV 9F1C): 1-8 letters or digits.",
        pattern=r"[A-Za-z0-9]{1,8}", allowed="1-8 letters or digits",
    )
    merchant_id: str = setting(
        "MID000000000001", "Merchant identifier (EMV 9F16): 1-15 letters or digits.",
        pattern=r"[A-Za-z0-9]{1,15}", allowed="1-15 letters or digits",
    )
    merchant_name: str = setting(
        "Walletpos Demo Shop", "Merchant name on receipts and in merchant QR codes (at most 25 characters).",
        pattern=r"[^\x00-\x1f]{1,25}", allowed="1-25 characters without control characters",
    )
    merchant_city: str = setting(
        "Shanghai", "Merchant city on receipts and in merchant QR codes (at most 15 characters).",
        pattern=r"[^\x00-\x1f]{1,15}", allowed="1-15 characters without control characters",
    )
    merchant_category_code: str = setting(
        "5411", "ISO 18245 merchant category code, four digits (5411 grocery, 4111 transit).",
        pattern=r"[0-9]{4}", allowed="four digits, e.g. 5411",
    )
    country: str = setting("CN", "ISO 3166-1 alpha-2 country of the terminal.", check=check_country)
    currency: str = setting(
        "CNY", "ISO 4217 currency of the terminal; payments in any other currency are declined.",
        check=check_currency,
    )
    timezone: str = setting(
        "Asia/Shanghai",
        "IANA time zone for screens, receipts and the business day (storage is always UTC).",
        check=check_timezone,
    )
    mode: Literal["retail", "transit"] = setting(
        "retail", "retail: a cashier keys amounts; transit: an unattended gate charges fares."
    )

    @property
    def currency_info(self) -> Currency:
        return currency(self.currency)

    @property
    def country_code(self) -> int:
        code = country_numeric(self.country)
        assert code is not None  # validated at load
        return code

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@section("What the operator sees and hears.")
@dataclass(frozen=True, kw_only=True)
class DisplayConfig:
    locale: Literal["en", "zh-CN"] = setting("en", "Language of every screen, message and receipt.")
    bell: bool = setting(True, "Ring the terminal bell on approve and decline.")
    decimal_separator: Literal[".", ","] = setting(".", "Decimal mark for keyed and shown amounts.")
    group_separator: Literal[",", ".", " ", ""] = setting(
        ",", "Digit grouping mark for shown amounts (keyed amounts may omit it); \"\" for none."
    )


@section(
    "EMV reader limits (EMV Book A/B), in the terminal currency. An amount at or above the\n"
    "contactless transaction limit is not allowed by contactless; above the floor limit it needs\n"
    "online authorisation; at or above the CVM required limit it needs a PIN or device verification."
)
@dataclass(frozen=True, kw_only=True)
class ReaderLimits:
    contactless_transaction_limit: Money = setting("10000.00", "Contactless transaction limit.")
    floor_limit: Money = setting("100.00", "Floor limit: larger payments go online when the backend is reachable.")
    cvm_required_limit: Money = setting("1000.00", "CVM required limit: at or above it, PIN or device verification.")


@section(
    "Offline approval: what the terminal may approve on its own when the backend cannot be asked.\n"
    "Amounts are in the terminal currency."
)
@dataclass(frozen=True, kw_only=True)
class OfflineLimits:
    max_payment: Money = setting("300.00", "Largest single payment approved without the backend.")
    card_daily_amount: Money = setting(
        "1000.00", "Most one card or wallet may pay offline at this terminal in one business day."
    )
    card_daily_count: int = setting(
        10, "Most offline payments by one card or wallet at this terminal in one business day.",
        minimum=0, maximum=10_000,
    )
    exposure_cap: Money = setting(
        "20000.00", "Most the terminal may hold in offline approvals the backend has not yet accepted."
    )
    max_hours_since_sync: int = setting(
        24, "No offline approvals once the last successful sync is older than this many hours.",
        minimum=1, maximum=24 * 14,
    )


@section("Limits of one wallet tier, in the terminal currency.")
@dataclass(frozen=True, kw_only=True)
class TierLimits:
    payment_limit: Money = setting("500.00", "Largest single payment.")
    daily_limit: Money = setting("1000.00", "Most paid in one business day.")


@section("Wallet tiers from the wallet's own rules (the code of a wallet says its tier).")
@dataclass(frozen=True, kw_only=True)
class WalletTiers:
    unverified: TierLimits = setting(
        {"payment_limit": "500.00", "daily_limit": "1000.00"},
        "Wallets of users who have not verified their identity: small payments only.",
    )
    real_name: TierLimits = setting(
        {"payment_limit": "5000.00", "daily_limit": "50000.00"},
        "Real-name (identity-verified) wallets.",
    )


@section("Refunds of earlier sales (always with a supervisor PIN).")
@dataclass(frozen=True, kw_only=True)
class RefundPolicy:
    window_days: int = setting(7, "A sale can be refunded for this many days (the wallet allows at most 7).",
                               minimum=0, maximum=7)


@section("Operators: PIN sign-in for cashiers, supervisors and technicians.")
@dataclass(frozen=True, kw_only=True)
class OperatorPolicy:
    max_failed_pins: int = setting(5, "Wrong PINs in a row before the operator is locked.", minimum=1, maximum=20)
    lockout_minutes: int = setting(15, "How long a locked operator must wait (a supervisor can unlock sooner).",
                                   minimum=1, maximum=24 * 60)
    idle_sign_out_minutes: int = setting(15, "Sign the operator out after this many idle minutes; 0 for never.",
                                         minimum=0, maximum=24 * 60)


@section("Receipts on screen, in files and as a QR code the customer's wallet app can keep.")
@dataclass(frozen=True, kw_only=True)
class ReceiptConfig:
    footer: str = setting("Thank you", "Last line of every receipt (at most 40 characters).",
                          pattern=r"[^\x00-\x1f]{0,40}", allowed="0-40 characters without control characters")
    keep_text_files: bool = setting(True, "Write each receipt as a text file in the data directory's receipts/.")


@section("The checkout: an optional product catalogue and the tax of keyed items.")
@dataclass(frozen=True, kw_only=True)
class CheckoutConfig:
    catalogue: str = setting(
        "", "Products the cashier can add by code or name: a .toml file of [[product]] tables or a .csv file\n"
            "with a header row, each product with code, name, price (text, \"12.50\") and tax_rate (percent,\n"
            "\"13\"); a relative path is read from the data directory. \"\" for none.")
    default_tax_rate: str = setting("0", "Tax rate (percent, included in the price) of an item keyed by amount.",
                                    pattern=r"[0-9]{1,3}(\.[0-9]{1,2})?", allowed="a percentage such as 13 or 6.5")


@section("Logging (one line per event, never card data).")
@dataclass(frozen=True, kw_only=True)
class LogConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting("INFO", "Least severe level written.")
    keep_files: int = setting(5, "Rotated log files kept in the data directory's logs/ folder.",
                              minimum=1, maximum=100)


@section(
    "The journal on this terminal: how long rows stay on the device. Rows the backend has not\n"
    "accepted always stay; older rows leave behind a signed checkpoint (the backend keeps them)."
)
@dataclass(frozen=True, kw_only=True)
class JournalConfig:
    keep_days: int = setting(
        31, "Business days of rows kept on the device once the backend holds them (at least the refund window).",
        minimum=8, maximum=3650)


@section(
    "The day close (Z report) of a terminal nobody closes by hand: a transit gate, a kiosk. The batch\n"
    "closes itself once a day, as a supervisor's close does (closed by \"auto\"), from the housekeeping of\n"
    "`walletpos gate` and `walletpos tui`; a terminal that was off at that time closes the missed day when\n"
    "it starts; an empty batch is not closed."
)
@dataclass(frozen=True, kw_only=True)
class DayCloseConfig:
    auto_at: str = setting(
        "", "Local time ([terminal] timezone) of the automatic close, HH:MM on the 24-hour clock (\"03:30\");\n"
        "\"\": no automatic close (a supervisor closes the day).", check=check_local_time,
    )

    @property
    def auto_time(self) -> dt_time | None:
        """The time of the automatic close, None when it is off."""
        if not self.auto_at:
            return None
        hour, minute = self.auto_at.split(":")
        return dt_time(int(hour), int(minute))


@section(
    "The wallet backend: where it is, how long the terminal waits for it, and how it is trusted.\n"
    "Requests are signed with the terminal key; the terminal is enrolled once with\n"
    "`walletpos backend enrol --token T` (the answer is kept in the data directory, mode 0600)."
)
@dataclass(frozen=True, kw_only=True)
class BackendConfig:
    enabled: bool = setting(True, "Talk to the backend (sync, online authorisation); false: offline-only terminal.")
    url: str = setting(
        "http://127.0.0.1:8765",
        "Base URL of the backend API; https, or http only for a backend on this machine (the sandbox).",
        check=check_backend_url,
    )
    connect_timeout_ms: int = setting(3000, "Longest wait to open a connection, in milliseconds.",
                                      minimum=10, maximum=60_000)
    request_timeout_ms: int = setting(
        15000, "Longest wait for an answer to a sync call (upload, downloads, heartbeat), in milliseconds.",
        minimum=10, maximum=300_000,
    )
    online_auth_deadline_ms: int = setting(
        3000, "Longest a payment waits for online authorisation, in milliseconds; then the offline answer\n"
        "decided beforehand stands.", minimum=10, maximum=60_000,
    )
    ca_file: str = setting(
        "", "PEM file of the CA certificates that may sign the backend's certificate (\"\": the public CAs\n"
        "of the certifi bundle that requests ships). Environment variables such as REQUESTS_CA_BUNDLE are ignored.",
    )
    pin_sha256: tuple[str, ...] = setting(
        [], "SHA-256 (hex) of the backend certificate's public key (SubjectPublicKeyInfo); when set, a\n"
        "certificate whose key is not listed is refused even if it verifies. List two during a key change.",
        pattern=r"[0-9a-f]{64}", allowed="64 lowercase hex digits",
    )
    breaker_failures: int = setting(
        3, "Consecutive failed calls after which the checkout stops asking the backend (circuit open).",
        minimum=1, maximum=100,
    )
    breaker_reset_ms: int = setting(
        30000, "How long the circuit stays open before the sync worker probes the backend again, in ms.",
        minimum=10, maximum=3_600_000,
    )


@section("Store-and-forward upload of the journal and the downloads that come back.")
@dataclass(frozen=True, kw_only=True)
class SyncConfig:
    interval_ms: int = setting(15000, "Time between sync cycles while all is well, in milliseconds.",
                               minimum=10, maximum=3_600_000)
    batch_size: int = setting(500, "Journal rows per upload request.", minimum=1, maximum=1000)
    compress: bool = setting(True, "gzip upload bodies larger than 1 KiB.")
    backoff_initial_ms: int = setting(
        1000, "First retry delay after a failed cycle, in milliseconds (doubled per failure, with jitter).",
        minimum=1, maximum=600_000,
    )
    backoff_max_ms: int = setting(300000, "Longest retry delay, in milliseconds.", minimum=1, maximum=3_600_000)
    retry_after_max_ms: int = setting(
        900000, "Longest Retry-After from the backend that is honoured, in milliseconds.",
        minimum=0, maximum=86_400_000,
    )


@section(
    "The camera that reads payment codes shown by customers. The same decoding serves a live camera and a\n"
    "file, so a recorded video or a folder of images can stand in for the camera."
)
@dataclass(frozen=True, kw_only=True)
class CameraConfig:
    source: str = setting(
        "sim:", "Where frames come from: a device index (0) or path (/dev/video0), a video file, an image, a\n"
        "folder of images (read in name order), an rtsp:// URL, or sim: for the built-in simulated camera.",
        check=check_camera_source,
    )
    width: int = setting(1280, "Frame width asked of the camera, in pixels.", minimum=160, maximum=3840)
    height: int = setting(720, "Frame height asked of the camera, in pixels.", minimum=120, maximum=2160)
    fps: int = setting(30, "Frames per second asked of the camera.", minimum=1, maximum=120)
    reopen_backoff_max_ms: int = setting(
        5000, "A camera that stops delivering frames is reopened, waiting twice as long after each failure up\n"
        "to this many milliseconds.", minimum=50, maximum=600_000,
    )
    debounce_ms: int = setting(
        1500, "A code is reported once per presentation: the same code is reported again only after it has\n"
        "been out of sight for this many milliseconds.", minimum=0, maximum=60_000,
    )


@section(
    "The contactless card reader and the EMV kernel's terminal data."
)
@dataclass(frozen=True, kw_only=True)
class ReaderConfig:
    device: str = setting(
        "sim:", "Which reader: sim: (the built-in simulated reader), pcsc:<pattern> (a PC/SC reader whose name\n"
        "contains the pattern; pcsc: alone takes the first reader), or nfc:<device> for a reader driven by\n"
        "nfcpy (nfc:usb:072f:2200, nfc:tty:USB0:pn532, nfc:udp:localhost:54321).",
        check=check_reader_device,
    )
    extra_aids: tuple[str, ...] = setting(
        [], "Applications accepted besides the built-in schemes (Visa, Mastercard, UnionPay, Amex, JCB,\n"
        "Discover, Interac), as \"AID=scheme\"; the wallet's own AID goes here.",
        check=lambda aids: next((p for p in map(check_aid, aids) if p), None),
    )
    terminal_type: int = setting(
        0x22, "EMV terminal type (9F35): 34 (0x22) attended with online capability, 37 (0x25) unattended\n"
        "(transit gates, vending).", minimum=0x11, maximum=0x36,
    )
    online_capable: bool = setting(
        True, "Tell cards the terminal can go online (TTQ); false makes an offline-only reader.",
    )
    card_timeout_ms: int = setting(
        30_000, "How long `walletpos tap` waits for a card when no --timeout is given.", minimum=100,
        maximum=600_000,
    )
    reopen_backoff_max_ms: int = setting(
        5000, "A reader that is unplugged is looked for again, waiting twice as long after each failure up to\n"
        "this many milliseconds.", minimum=50, maximum=600_000,
    )

    @property
    def aid_map(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.extra_aids)


@section("Payment codes: which codes this terminal accepts and the merchant code it shows.")
@dataclass(frozen=True, kw_only=True)
class QrConfig:
    numeric_prefixes: tuple[str, ...] = setting(
        ["28", "29"], "Numeric wallet payment codes (18-19 digits, resolved by the backend) start with one of these.",
        pattern=r"[0-9]{1,6}", allowed="1-6 digits",
    )
    issuer_keys: tuple[str, ...] = setting(
        [], "Issuer public keys for signed wallet codes, as \"key-id:hex\" (Ed25519, 32 bytes); keys the\n"
        "backend delivers are used as well. A code signed by a key in neither place is refused.",
        check=lambda keys: next((p for p in map(check_issuer_key, keys) if p), None),
    )
    clock_skew_seconds: int = setting(
        30, "Tolerance between the issuer's clock and the terminal's when checking a signed code's time window.",
        minimum=0, maximum=600,
    )
    merchant_account_id: int = setting(
        26, "EMVCo merchant account ID (26-51) of this wallet in the merchant code the terminal shows.",
        minimum=26, maximum=51,
    )
    merchant_account_guid: str = setting(
        "com.walletpos.pay", "Globally unique identifier of the wallet (merchant account sub-ID 00): a reverse\n"
        "domain name or an AID.", pattern=r"[\x21-\x7e]{1,32}", allowed="1-32 printable ASCII characters",
    )
    merchant_code_minutes: int = setting(
        10, "A merchant code that no payment screen watches (printed by `walletpos qr`, or left on screen when\n"
        "the terminal stopped) is closed at the backend this many minutes after it was shown; the\n"
        "customer cannot pay it after that. A code on the payment screen closes when the cashier leaves it.",
        minimum=1, maximum=1440,
    )

    @property
    def issuer_key_map(self) -> dict[str, bytes]:
        """Configured issuer keys: key id -> raw Ed25519 public key."""
        return {k: bytes.fromhex(v) for k, v in (item.split(":", 1) for item in self.issuer_keys)}


@section(
    "Transit gate mode (`walletpos gate`, with [terminal] mode = \"transit\"): where the gate stands, its\n"
    "fare table, its hardware and its rules. Every tap is decided offline and journaled as a fare row."
)
@dataclass(frozen=True, kw_only=True)
class TransitConfig:
    fare_table: str = setting(
        "", "Fare table file (TOML; format in README.md, \"Transit gate\"). A relative path is read from the\n"
        "config file's directory; \"\" means none (the gate will not start without one).",
    )
    station: str = setting(
        "", "Station id of this gate, as in the fare table's [stations].", pattern=r"[A-Za-z0-9_.-]{0,32}",
        allowed="0-32 of A-Z a-z 0-9 _ . -",
    )
    direction: Literal["entry", "exit", "both"] = setting(
        "both", "entry: tap-in only; exit: tap-out only; both: a two-way gate (a tap-out when the card has a\n"
        "journey open, else a tap-in).",
    )
    gate_id: str = setting(
        "G01", "This gate's id within the station (on every fare row).", pattern=r"[A-Za-z0-9_.-]{1,16}",
        allowed="1-16 of A-Z a-z 0-9 _ . -",
    )
    gate_device: str = setting(
        "sim:", "The gate hardware: sim: (simulated) or serial:<device>[@baud] for a serial relay board\n"
        "(e.g. serial:/dev/ttyUSB0@9600).", check=check_gate_device,
    )
    open_ms: int = setting(
        6000, "How long the gate stays open for one passenger, in milliseconds.", minimum=500, maximum=60_000,
    )
    same_tap_ms: int = setting(
        2000, "The same card at the same gate within this many milliseconds is one tap read twice: no second\n"
        "fare, the gate is not opened again.", minimum=0, maximum=60_000,
    )
    anti_passback_seconds: int = setting(
        300, "A card let through at this station in the same direction is refused for this many seconds\n"
        "(a card handed back over the gate).", minimum=0, maximum=86_400,
    )
    max_hours_since_sync: int = setting(
        72, "Gates refuse taps once the last successful sync is older than this many hours (their deny list\n"
        "is too old to trust); transit's own value of [offline] max_hours_since_sync.", minimum=1, maximum=24 * 30,
    )
    first_rides_offline: int = setting(
        1, "Rides a card this gate has not yet seen accepted by the backend may take before the backend\n"
        "answers (a card it declines is on the deny list at the next sync); 0: no limit.", minimum=0, maximum=10,
    )


@dataclass(frozen=True, kw_only=True)
class Config:
    terminal: TerminalConfig
    display: DisplayConfig
    limits: ReaderLimits
    offline: OfflineLimits
    wallet_tiers: WalletTiers
    refunds: RefundPolicy
    operators: OperatorPolicy
    receipts: ReceiptConfig
    checkout: CheckoutConfig
    log: LogConfig
    journal: JournalConfig
    day_close: DayCloseConfig
    backend: BackendConfig
    sync: SyncConfig
    camera: CameraConfig
    qr: QrConfig
    reader: ReaderConfig
    transit: TransitConfig
    source: str = field(default=EMBEDDED, compare=False)

    @property
    def currency(self) -> Currency:
        return self.terminal.currency_info


ROOT_SECTIONS: tuple[str, ...] = tuple(f.name for f in fields(Config) if f.name != "source")


def iter_keys(cls: type = Config, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every leaf key path, e.g. ('limits', 'floor_limit')."""
    keys: list[tuple[str, ...]] = []
    hints = type_hints(cls)
    for f in fields(cls):
        if f.name == "source":
            continue
        tp = hints[f.name]
        if is_table(tp):
            keys.extend(iter_keys(tp, (*path, f.name)))
        else:
            keys.append((*path, f.name))
    return keys


__all__ = [
    "EMBEDDED", "ROOT_SECTIONS", "BackendConfig", "CameraConfig", "CheckoutConfig", "Config", "DayCloseConfig",
    "DisplayConfig", "LogConfig",
    "OfflineLimits", "OperatorPolicy", "QrConfig", "ReaderConfig", "ReaderLimits", "ReceiptConfig", "RefundPolicy",
    "SyncConfig", "TerminalConfig", "TierLimits", "TransitConfig", "WalletTiers", "is_table", "iter_keys", "section",
    "setting", "type_hints",
]
