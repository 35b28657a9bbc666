"""Card readers by name: one string picks the driver, as nfcpy's device paths do.

| spec | reader |
|---|---|
| `pcsc:` | the first PC/SC reader (pcscd) |
| `pcsc:<pattern>` | the first PC/SC reader whose name contains `<pattern>` or matches it as a regex |
| `nfc:usb:072f:2200`, `nfc:usb`, `nfc:tty:USB0:pn532` | an nfcpy reader on USB or a serial port |
| `nfc:udp:localhost:54321` | nfcpy's UDP driver: the simulated RF link (drivers/sim/nfc_card.py is the card) |
| `sim:` | the in-process simulated reader (drivers/simreader.py) for the demo and UI tests |

The drivers are imported only when asked for, so importing this module loads neither pyscard nor
nfcpy. The status-word handling every APDU transport shares is `drivers.apdu`.
"""

from __future__ import annotations

from drivers.base import CardReader
from terminal.errors import ConfigError

READER_KINDS = ("pcsc", "nfc", "sim")


def open_reader(spec: str) -> CardReader:
    """The reader a `[reader] device` / `--reader` string names (see the table above).
    Raises ConfigError for a spec no driver understands; opening the device itself happens on the
    first `wait_for_card` (a reader that is missing then is a ReaderUnavailableError, not a crash)."""
    text = spec.strip()
    kind, sep, rest = text.partition(":")
    kind = kind.lower()
    if not sep and kind in READER_KINDS:
        rest = ""
    elif not sep:
        raise ConfigError(f"reader {spec!r}: expected one of pcsc:<reader name pattern>, nfc:<device path> "
                          "(e.g. nfc:usb:072f:2200, nfc:udp:localhost:54321) or sim:")
    if kind == "pcsc":
        from drivers.pcsc import PcscReader

        return PcscReader(rest)
    if kind == "nfc":
        from drivers.nfc import NfcReader

        return NfcReader(rest or "usb")
    if kind == "sim":
        from drivers.simreader import SimReader

        return SimReader()
    raise ConfigError(f"reader {spec!r}: unknown kind {kind!r}; expected pcsc:, nfc: or sim:")
