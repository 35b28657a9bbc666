"""The one error root of walletpos. Each layer has its own small subclass; every error carries a
short title and a message that says what was wrong and what to do, so one dialog or one CLI line
can show any failure. A declined payment is a result, never an exception."""

from __future__ import annotations


class WalletposError(Exception):
    title = "walletpos error"

    def __init__(self, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title

    def __str__(self) -> str:
        return self.message


class ConfigError(WalletposError):
    title = "Configuration error"


class MoneyError(WalletposError):
    title = "Amount error"


class StorageError(WalletposError):
    """The journal cannot record: full disk, read-only data directory, broken database."""

    title = "Storage error"


class JournalIntegrityError(WalletposError):
    title = "Journal integrity error"


class SecurityError(WalletposError):
    title = "Security error"


class CardError(WalletposError):
    """A card could not be read or answered something unusable. `outcome` is what the terminal
    tells the customer: "tap_again", "try_another_card", "card_blocked", "app_not_supported",
    "card_error"."""

    title = "Card error"

    def __init__(self, message: str, *, outcome: str = "card_error", title: str | None = None) -> None:
        super().__init__(message, title=title)
        self.outcome = outcome


class TlvError(CardError):
    """Malformed BER-TLV; `offset` is where in the input the problem was found."""

    title = "Malformed card data"

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset})", outcome="try_another_card")
        self.offset = offset


class ReaderError(WalletposError):
    """A reader or camera is missing, unplugged or failing (an event, never a crash)."""

    title = "Reader error"


class QrPayloadError(WalletposError):
    """A scanned code is not a usable payment code; the message says what is wrong with it."""

    title = "Not a usable payment code"

    def __init__(self, message: str, *, reason: str = "invalid_code") -> None:
        super().__init__(message)
        self.reason = reason


class SyncError(WalletposError):
    """Talking to the wallet backend failed (network, timeout, refused, unreadable answer)."""

    title = "Backend error"


class CodeAlreadyUsed(WalletposError):
    """A single-use wallet payment code was already used at this terminal."""

    title = "Code already used"
