"""Status-word handling every APDU transport shares (PC/SC, nfcpy, the simulated reader)."""

from __future__ import annotations

from collections.abc import Callable

from terminal.errors import CardError

_MAX_GET_RESPONSE = 64  # 61xx rounds before a card counts as broken (64 x 256 bytes is far more than EMV needs)


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
