"""walletpos: point-of-sale terminal software for a bank's digital wallet."""

__version__ = "0.1.0"
