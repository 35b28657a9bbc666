"""What a technician needs to see of a tap: every command and answer with its time (the recording),
the last failed taps kept as redacted traces, and the result of a test tap or a replay.

- `RecordingTransport` sits between the EMV kernel and the card session and keeps each exchange
  (in memory only: an answer may hold the card number);
- `FailedTaps` keeps the last `KEEP` failed taps of this terminal in `<data dir>/traces/`, each a
  JSON file in the format of the shared vectors' transcripts, redacted by `terminal.core.traces`
  (no card number in clear); the test suite, `walletpos tap --replay FILE` and the diagnostics
  screen replay them through the kernel;
- `TapCheck` is one test tap or replay: what the kernel read (or why not), the exchanges with a
  decoded, masked view of each answer, and the timings. Nothing of it is journaled.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from terminal.core.emv import ApduTransport, CardRead
from terminal.core.traces import Exchange, check_trace_item, command_name, redact_command, tlv_tree, trace_item
from terminal.errors import StorageError

log = logging.getLogger("walletpos.tapstore")

TRACES_DIR = "traces"
KEEP = 20
READ_FAILURES = frozenset({"tap_again", "try_another_card", "card_blocked", "app_not_supported", "card_error"})
_NAME = re.compile(r"tap-[0-9TZ]+-[a-z_]+(?:-\d+)?\.json")


class RecordingTransport:
    """An `ApduTransport` that keeps every exchange of the transport behind it (see the module
    docstring). A command whose answer never came (card removed, reader gone) is kept with None."""

    def __init__(self, transport: ApduTransport, clock: Callable[[], float] = time.perf_counter) -> None:
        self.transport = transport
        self.clock = clock
        self.exchanges: list[Exchange] = []

    @property
    def atr(self) -> bytes | None:
        atr = getattr(self.transport, "atr", None)
        return bytes(atr) if isinstance(atr, bytes | bytearray) else None

    def transmit(self, apdu: bytes) -> bytes:
        t0 = self.clock()
        try:
            response = self.transport.transmit(apdu)
        except BaseException:
            self.exchanges.append(Exchange(bytes(apdu), None, (self.clock() - t0) * 1000))
            raise
        self.exchanges.append(Exchange(bytes(apdu), bytes(response), (self.clock() - t0) * 1000))
        return response


@dataclass(frozen=True)
class ShownExchange:
    """One exchange as a screen or a command line may show it (card-holder data masked)."""

    name: str
    command: str
    sw: str
    ms: float
    tree: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "command": self.command, "sw": self.sw, "ms": round(self.ms, 3),
                "tree": list(self.tree)}


def show_exchange(exchange: Exchange) -> ShownExchange:
    response = exchange.response
    if response is None:
        return ShownExchange(command_name(exchange.command), redact_command(exchange.command), "----",
                             exchange.ms, ("no answer: the card left the field or the reader failed",))
    sw = response[-2:].hex().upper() if len(response) >= 2 else "----"
    data = response[:-2] if len(response) >= 2 else response
    return ShownExchange(command_name(exchange.command), redact_command(exchange.command), sw, exchange.ms,
                         tuple(tlv_tree(data)) if data else ())


@dataclass(frozen=True)
class TapCheck:
    """One test tap or replay (see the module docstring). `outcome`: `read` (the kernel read the
    card), one of READ_FAILURES, `reader_unavailable`, `no_card` or `storage`."""

    outcome: str
    message: str
    reader: str
    read: CardRead | None = None
    exchanges: tuple[Exchange, ...] = field(default=(), repr=False)  # raw: shown only through `shown()`
    atr: str | None = None
    total_ms: float = 0.0
    saved: str | None = None  # file name of the failed tap's trace
    source: str = "card"

    @property
    def ok(self) -> bool:
        return self.outcome == "read"

    def shown(self) -> list[ShownExchange]:
        return [show_exchange(e) for e in self.exchanges]

    def to_dict(self) -> dict[str, Any]:
        read = self.read
        return {
            "outcome": self.outcome, "message": self.message, "reader": self.reader, "source": self.source,
            "atr": self.atr, "total_ms": round(self.total_ms, 3), "saved_trace": self.saved,
            "card": read.to_dict() if read is not None else None,
            "exchanges": [s.to_dict() for s in self.shown()],
        }


@dataclass(frozen=True)
class SavedTap:
    """A failed tap kept on this terminal (its trace file name and what it says about itself)."""

    name: str
    saved_at: str
    outcome: str
    message: str
    masked_pan: str | None
    exchanges: int
    origin: str


def _private_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def load_trace_file(path: Path) -> dict[str, Any]:
    """The one recorded exchange in a trace file: a saved failed tap, or a file holding one
    `emv_apdu_sequence` item (a list of one, as the shared vectors file is a list). Raises
    StorageError saying what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StorageError(f"cannot read the trace {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise StorageError(f"the trace {path} is not JSON ({exc})") from None
    items = data if isinstance(data, list) else [data]
    sequences = [item for item in items if isinstance(item, dict) and item.get("kind") == "emv_apdu_sequence"]
    if len(sequences) != 1:
        raise StorageError(f"the trace {path} holds {len(sequences)} recorded exchanges; one is needed")
    try:
        return check_trace_item(sequences[0])
    except ValueError as exc:
        raise StorageError(f"the trace {path}: {exc}") from None


class FailedTaps:
    """The last failed taps of this terminal, redacted, one JSON file each (module docstring)."""

    def __init__(self, directory: Path, terminal_id: str, *, keep: int = KEEP) -> None:
        self.directory = directory
        self.terminal_id = terminal_id
        self.keep = keep

    def save(self, exchanges: Sequence[Exchange], *, outcome: str, message: str, now: datetime,
             origin: str, reader: str = "", atr: bytes | None = None, brand: str = "",
             details: Mapping[str, Any] | None = None) -> str | None:
        """Keep one failed tap; returns its file name (None when it could not be written: logged,
        never in the way of the payment flow)."""
        if not exchanges:
            return None
        stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
        item = trace_item(exchanges, label=f"{origin} on {reader or 'reader'}: {outcome}",
                          source=f"walletpos:{self.terminal_id}@{now.isoformat(timespec='seconds')}",
                          outcome=outcome, message=message, brand=brand,
                          extra={"walletpos": {"saved_at": now.isoformat(timespec="seconds"), "origin": origin,
                                               "reader": reader, "atr": atr.hex().upper() if atr else None,
                                               "message": message, **(dict(details) if details else {})}})
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            name = f"tap-{stamp}-{outcome}.json"
            n = 1
            while (self.directory / name).exists():
                n += 1
                name = f"tap-{stamp}-{outcome}-{n}.json"
            _private_write(self.directory / name, json.dumps([item], indent=1, ensure_ascii=False) + "\n")
            self._prune()
        except OSError as exc:
            log.warning("failed tap not kept (%s): %s", outcome, exc.strerror or exc)
            return None
        log.info("failed tap kept as %s (%s)", name, outcome)
        return name

    def _files(self) -> list[Path]:
        try:
            return sorted((p for p in self.directory.iterdir() if _NAME.fullmatch(p.name)), reverse=True)
        except OSError:
            return []

    def _prune(self) -> None:
        for old in self._files()[self.keep:]:
            old.unlink(missing_ok=True)

    def paths(self) -> list[Path]:
        """The kept traces, newest first."""
        return self._files()

    def list(self) -> list[SavedTap]:
        out: list[SavedTap] = []
        for path in self._files():
            try:
                item = load_trace_file(path)
            except StorageError as exc:
                log.warning("%s", exc.message)
                continue
            meta = item.get("walletpos") or {}
            expected = item.get("expected") or {}
            out.append(SavedTap(path.name, str(meta.get("saved_at", "")), str(expected.get("outcome", "")),
                                str(meta.get("message", "")), expected.get("masked_pan"), len(item["data"]),
                                str(meta.get("origin", ""))))
        return out

    def path_of(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise StorageError(f"{name!r} is not the name of a kept failed tap")
        return self.directory / name

    def load(self, name: str) -> dict[str, Any]:
        return load_trace_file(self.path_of(name))


__all__ = ["KEEP", "READ_FAILURES", "TRACES_DIR", "FailedTaps", "RecordingTransport", "SavedTap", "ShownExchange",
           "TapCheck", "load_trace_file", "show_exchange"]
