"""Logging: standard `logging`, one line per event, written to the data directory's logs/ folder.

Nothing in walletpos logs card data on purpose; `RedactCardNumbers` is the second line of defence:
any run of 12-19 digits in a log line is masked before it is written.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

_DIGIT_RUN = re.compile(r"(?<!\d)(\d{6})\d{2,9}(\d{4})(?!\d)")

LOG_FILE = "walletpos.log"


def redact(text: str) -> str:
    return _DIGIT_RUN.sub(lambda m: m.group(1) + "*" * (len(m.group(0)) - 10) + m.group(2), text)


class RedactCardNumbers(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


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
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            log_dir / LOG_FILE, maxBytes=2_000_000, backupCount=keep_files, encoding="utf-8"
        )
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactCardNumbers())
    handler._walletpos = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    return log_dir / LOG_FILE
