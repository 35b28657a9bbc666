"""Logging: standard `logging`, one line per event, written to the data directory's logs/ folder.

Nothing in walletpos logs card data on purpose; `RedactCardNumbers` is the second line of defence:
every card number in a log line (`terminal.core.cardmask`: Luhn-checked, standing alone, also in
groups or as track 2 data) is masked before it is written; hashes and signatures stay readable.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from terminal.core.cardmask import mask_card_numbers

LOG_FILE = "walletpos.log"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def redact(text: str) -> str:
    """`text` with every card number masked (the one masking function of every output path)."""
    return mask_card_numbers(text)


class RedactCardNumbers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class _LogFile(logging.handlers.RotatingFileHandler):
    """The log file. A line that cannot be written (a full disk, the file gone) is dropped without the
    traceback `logging` would print on standard error: the command itself says what is wrong with the
    storage, in one line."""

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handleError(record)


def setup_logging(log_dir: Path, level: str = "INFO", keep_files: int = 5) -> Path | None:
    """Route the `walletpos` loggers to a rotating file; returns its path (None if not writable)."""
    root = logging.getLogger("walletpos")
    root.setLevel(level)
    for old in list(root.handlers):
        if getattr(old, "_walletpos", False):
            root.removeHandler(old)
            old.close()
    try:
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        handler: logging.Handler = _LogFile(
            log_dir / LOG_FILE, maxBytes=2_000_000, backupCount=keep_files, encoding="utf-8"
        )
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactCardNumbers())
    handler._walletpos = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    return log_dir / LOG_FILE


def current_level() -> str:
    """The level the `walletpos` loggers write from now (DEBUG, INFO, WARNING or ERROR)."""
    return logging.getLevelName(logging.getLogger("walletpos").getEffectiveLevel())


def set_level(level: str) -> str:
    """Change the level at run time (until the next start, when `[log] level` applies again)."""
    name = level.strip().upper()
    if name not in LEVELS:
        raise ValueError(f"log level {level!r}: one of {', '.join(LEVELS)}")
    logging.getLogger("walletpos").setLevel(name)
    logging.getLogger("walletpos.logs").warning("log level set to %s", name)
    return name
