"""The product catalogue file (`[checkout] catalogue`): read once, parsed by `terminal.core.basket`."""

from __future__ import annotations

from pathlib import Path

from terminal.config import Config
from terminal.core.basket import BasketError, Catalogue, parse_catalogue
from terminal.errors import ConfigError


def catalogue_path(config: Config, data_dir: Path) -> Path | None:
    """The configured catalogue file (a relative path is in the data directory), or None."""
    name = config.checkout.catalogue.strip()
    if not name:
        return None
    path = Path(name).expanduser()
    return path if path.is_absolute() else data_dir / path


def load_catalogue(config: Config, data_dir: Path) -> Catalogue:
    """The products of the configured catalogue (empty when none is configured). A file that cannot
    be read or has a bad entry is a `ConfigError` naming the file, the entry and what is wrong."""
    path = catalogue_path(config, data_dir)
    if path is None:
        return Catalogue()
    fmt = path.suffix.lower().lstrip(".")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"[checkout] catalogue: cannot read {path} ({exc.strerror})") from None
    try:
        return parse_catalogue(text, fmt, config.currency, source=str(path),
                               decimal_sep=config.display.decimal_separator)
    except BasketError as exc:
        raise ConfigError(f"[checkout] catalogue: {exc.message}") from None


__all__ = ["catalogue_path", "load_catalogue"]
