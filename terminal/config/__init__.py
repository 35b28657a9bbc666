"""Configuration: TOML files validated into typed, frozen objects.

Every key is declared once, in `schema`, with its default and its documentation (`setting(...)`);
`config/default.toml` is generated from these declarations (`defaults`, `walletpos config defaults`)
and a test keeps the two identical. A file only needs the keys it changes. A wrong key, type or
value stops the terminal at start with a `ConfigError` naming the file, the key and what is allowed
(`loader`).

Amounts are written as strings in the terminal currency ("300.00"); floats are refused so that no
binary fraction ever reaches a money path.

Every name is importable from `terminal.config` itself.
"""

from __future__ import annotations

from terminal.config.defaults import defaults_toml
from terminal.config.loader import config_from_mapping, load_config
from terminal.config.schema import (
    EMBEDDED,
    BackendConfig,
    CameraConfig,
    CheckoutConfig,
    Config,
    DisplayConfig,
    LogConfig,
    OfflineLimits,
    OperatorPolicy,
    QrConfig,
    ReaderConfig,
    ReaderLimits,
    ReceiptConfig,
    RefundPolicy,
    SyncConfig,
    TerminalConfig,
    TierLimits,
    TransitConfig,
    WalletTiers,
    iter_keys,
    section,
    setting,
)

__all__ = [
    "EMBEDDED", "BackendConfig", "CameraConfig", "CheckoutConfig", "Config", "DisplayConfig", "LogConfig",
    "OfflineLimits", "OperatorPolicy", "QrConfig", "ReaderConfig", "ReaderLimits", "ReceiptConfig", "RefundPolicy",
    "SyncConfig", "TerminalConfig", "TierLimits", "TransitConfig", "WalletTiers", "config_from_mapping",
    "defaults_toml", "iter_keys",
    "load_config", "section", "setting",
]
