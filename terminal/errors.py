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
