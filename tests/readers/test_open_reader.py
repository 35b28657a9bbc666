"""open_reader specs, the shared 61xx/6Cxx handling, and import hygiene of drivers.readers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from drivers.apdu import apdu_with_le, complete_response
from drivers.readers import open_reader
from drivers.sim.nfc_card import ROOT
from terminal.errors import CardError, ConfigError
from tests.readers.standin import StandInCard


def test_specs_pick_the_driver() -> None:
    from drivers.nfc import NfcReader
    from drivers.pcsc import PcscReader
    from drivers.simreader import SimReader

    with open_reader("pcsc:Virtual PCD") as reader:
        assert isinstance(reader, PcscReader) and reader.pattern == "Virtual PCD"
    with open_reader("pcsc:") as reader:
        assert isinstance(reader, PcscReader) and reader.pattern == ""
    with open_reader("nfc:udp:localhost:54321") as reader:
        assert isinstance(reader, NfcReader) and reader.path == "udp:localhost:54321"
    with open_reader("nfc:usb:072f:2200") as reader:
        assert isinstance(reader, NfcReader) and reader.path == "usb:072f:2200"
    with open_reader(" sim: ") as reader:
        assert isinstance(reader, SimReader)
    with open_reader("sim") as reader:
        assert isinstance(reader, SimReader)


@pytest.mark.parametrize("spec", ["", "acr122", "serial:/dev/ttyUSB0", "usb:072f:2200"])
def test_unknown_specs_are_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="pcsc:"):
        open_reader(spec)


def test_apdu_with_le_for_each_case() -> None:
    assert apdu_with_le(bytes.fromhex("00CA9F17"), 4) == bytes.fromhex("00CA9F1704")  # case 1
    assert apdu_with_le(bytes.fromhex("00B2010C00"), 0x1C) == bytes.fromhex("00B2010C1C")  # case 2
    assert apdu_with_le(bytes.fromhex("00A4040002AABB"), 9) == bytes.fromhex("00A4040002AABB09")  # case 3
    assert apdu_with_le(bytes.fromhex("00A4040002AABB00"), 9) == bytes.fromhex("00A4040002AABB09")  # case 4
    assert apdu_with_le(bytes.fromhex("00A404000000020000"), 9) is None  # extended length


def test_complete_response_against_a_card() -> None:
    card = StandInCard()
    assert complete_response(card.respond, bytes.fromhex("00CA000100")) == bytes(range(200)) + b"\x90\x00"
    assert complete_response(card.respond, bytes.fromhex("00CA000200")) == bytes(range(32)) + b"\x90\x00"
    assert complete_response(card.respond, bytes.fromhex("00B2010C00")) == b"\x6d\x00"  # other SWs untouched


def test_endless_61xx_is_a_card_error() -> None:
    def always_more(apdu: bytes) -> bytes:  # a broken card: no real card behaves like this on purpose
        return b"\x00\x61\x10"

    with pytest.raises(CardError, match="61xx") as caught:
        complete_response(always_more, bytes.fromhex("00CA000100"))
    assert caught.value.outcome == "try_another_card"


def test_importing_readers_loads_no_driver_library() -> None:
    code = ("import sys, drivers.readers\n"
            "print(sorted(m for m in ('smartcard', 'nfc', 'cv2') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "[]", done.stderr
