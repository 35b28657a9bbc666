"""Shared fixtures. Integration fixtures (pcscd, virtual cards, sandbox backend) live next to the
tests that use them; everything here is cheap."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.pcsc_env import pcscd  # noqa: F401  (session fixture: pcscd with the vpcd reader, started if needed)

ROOT = Path(__file__).resolve().parents[1]


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
    return env


WALLETPOS = [sys.executable, "-m", "terminal.cli"]
