"""Fixtures for the reader driver tests: pcscd with vpcd (tests/conftest.py, session-wide) and the
per-driver rigs of tests/readers/rigs.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drivers.sim.pcscd import PcscdHandle
from tests.readers.rigs import NfcRig, PcscRig, Rig, SimRig


@pytest.fixture(params=["sim", "pcsc", "nfc"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    """Each contract test runs once per driver."""
    made: Rig
    if request.param == "sim":
        made = SimRig()
    elif request.param == "pcsc":
        made = PcscRig(request.getfixturevalue("pcscd"))
    else:
        made = NfcRig()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def pcsc_rig(pcscd: PcscdHandle) -> Iterator[PcscRig]:
    made = PcscRig(pcscd)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def nfc_rig() -> Iterator[NfcRig]:
    made = NfcRig()
    try:
        yield made
    finally:
        made.close()
