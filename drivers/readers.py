"""Card readers by name: one string picks the driver, as nfcpy's device paths do.

| spec | reader |
|---|---|
| `pcsc:` | the first PC/SC reader (pcscd) |
| `pcsc:<pattern>` | the first PC/SC reader whose name contains `<pattern>` or matches it as a regex |
| `nfc:usb:072f:2200`, `nfc:usb`, `nfc:tty:USB0:pn532` | an nfcpy reader on USB or a serial port |
| `nfc:udp:localhost:54321` | nfcpy's UDP driver: the simulated RF link (drivers/sim/nfc_card.py is the card) |
| `sim:` | the in-process simulated reader (drivers/sim/reader.py) for the demo and UI tests |

The drivers are imported only when asked for, so importing this module loads neither pyscard nor
nfcpy. `complete_response` is the status-word handling every APDU transport shares.
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.base import CardReader
from terminal.errors import CardError, ConfigError

READER_KINDS = ("pcsc", "nfc", "sim")
_MAX_GET_RESPONSE = 64  # 61xx rounds before a card counts as broken (64 x 256 bytes is far more than EMV needs)


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
        from drivers.sim.reader import SimReader

        return SimReader()
    raise ConfigError(f"reader {spec!r}: unknown kind {kind!r}; expected pcsc:, nfc: or sim:")


def apdu_with_le(apdu: bytes, le: int) -> bytes | None:
    """A short-form command APDU with its Le replaced (or added); None for extended-length APDUs,
    which 6Cxx does not apply to."""
    if len(apdu) == 4:
        return apdu + bytes([le])
    if len(apdu) == 5:
        return apdu[:4] + bytes([le])
    lc = apdu[4]
    if lc == 0:
        return None
    if len(apdu) == 5 + lc:
        return apdu + bytes([le])
    if len(apdu) == 6 + lc:
        return apdu[:-1] + bytes([le])
    return None


def complete_response(send: Callable[[bytes], bytes], apdu: bytes) -> bytes:
    """Send `apdu` with `send` (one raw exchange returning data + SW1 SW2, at least 2 bytes) and
    hide the T=0 transport status words from the caller:

    - 6Cxx (wrong Le): the command is sent again with Le = xx, once;
    - 61xx (more data): GET RESPONSE (on the command's logical channel) with Le = xx until the card
      gives a final status word; the pieces are joined.

    Returns the complete response data followed by the final SW1 SW2."""
    response = send(apdu)
    if response[-2] == 0x6C:
        resend = apdu_with_le(apdu, response[-1])
        if resend is not None:
            response = send(resend)
    if response[-2] != 0x61:
        return response
    data = bytearray()
    for _ in range(_MAX_GET_RESPONSE):
        data += response[:-2]
        response = send(bytes([apdu[0] & 0x03, 0xC0, 0x00, 0x00, response[-1]]))
        if response[-2] != 0x61:
            return bytes(data) + response
    raise CardError("the card keeps answering 61xx (more data) without end; try another card",
                    outcome="try_another_card")
