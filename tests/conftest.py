"""Shared fixtures. Integration fixtures (pcscd, virtual cards, sandbox backend) live next to the
tests that use them; everything here is cheap."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.sim.pcscd import PcscdHandle, PcscdUnavailable, ensure_pcscd
from tests.vectors import require_vectors

ROOT = Path(__file__).resolve().parents[1]


def pcsc_required() -> bool:
    """True where a missing PC/SC stack is a failure, not a skip (CI, or asked for explicitly)."""
    return bool(os.environ.get("CI") or os.environ.get("WALLETPOS_REQUIRE_PCSC"))


@pytest.fixture(scope="session")
def pcscd() -> Iterator[PcscdHandle]:
    """Session-wide pcscd with the vpcd reader (drivers/sim/pcscd.py), started if none runs and then
    stopped at the end. Without the stack the tests that use it are skipped, or fail under CI /
    WALLETPOS_REQUIRE_PCSC."""
    try:
        handle = ensure_pcscd()
    except PcscdUnavailable as exc:
        if pcsc_required():
            pytest.fail(f"PC/SC test stack required (CI / WALLETPOS_REQUIRE_PCSC) but unavailable: {exc}",
                        pytrace=False)
        pytest.skip(str(exc))
    yield handle
    if handle.owned:
        handle.stop()


@pytest.fixture(scope="session")
def shared_vectors() -> Path:
    """The shared public vectors directory (tests/vectors.py): the test is skipped without it, and
    fails under WALLETPOS_REQUIRE_VECTORS=1."""
    return require_vectors()


class FixedClock:
    """A clock the tests move by hand (UTC)."""

    def __init__(self, start: datetime = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def service(data_dir: Path, clock: FixedClock) -> Iterator:
    from terminal.bootstrap import bootstrap

    svc = bootstrap(config_path=None, data_dir=data_dir, clock=clock, env={})
    yield svc
    svc.close()


@pytest.fixture
def cli_env(data_dir: Path) -> dict[str, str]:
    """Environment for running `walletpos` as a subprocess against a private data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETPOS_")}
    env["WALLETPOS_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(ROOT)
    env["WALLETPOS_DEMO_PORT"] = "0"
    return env


WALLETPOS = [sys.executable, "-m", "terminal.cli"]

# Demos started by tests take any free port: on 8765 (the backend URL of the embedded defaults) a demo
# in one xdist worker would answer the doctor test of another that expects nothing to listen there.
os.environ["WALLETPOS_DEMO_PORT"] = "0"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use the machine-wide pcscd, its vpcd port or nfcpy's udp driver are marked `devices`:
    scripts/test runs them in a second, serial phase after the rest has run on every core."""
    readers = Path(__file__).parent / "readers"  # its `rig` fixture opens pcscd or nfcpy by parameter
    for item in items:
        if item.get_closest_marker("pcsc") or item.get_closest_marker("nfc") \
                or "pcscd" in getattr(item, "fixturenames", ()) or readers in item.path.parents:
            item.add_marker(pytest.mark.devices)
    # the long tests first: pytest-xdist hands tests out in this order, so a test of minutes starts
    # while the others keep the rest of the cores busy, instead of running alone at the end
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
