"""Fixtures for the backend tests: one real sandbox backend (its own process, HTTP on 127.0.0.1)
for the session, wiped before every test; services wired to it with timeouts and backoff tuned so
that fault-injection runs take seconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import Sandbox, start_sandbox
from terminal.bootstrap import bootstrap
from terminal.config import config_from_mapping
from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.payment import CardFacts
from terminal.service import Service
from tests.conftest import FixedClock

TERMINAL = "WPOS0001"

FAST_BACKEND = {"connect_timeout_ms": 500, "request_timeout_ms": 1000, "online_auth_deadline_ms": 400,
                "breaker_failures": 3, "breaker_reset_ms": 100}
FAST_SYNC = {"interval_ms": 50, "batch_size": 100, "backoff_initial_ms": 5, "backoff_max_ms": 50,
             "retry_after_max_ms": 3000}
# Room for many offline approvals by one card in one test.
ROOMY_OFFLINE = {"card_daily_count": 10000, "card_daily_amount": "1000000.00", "exposure_cap": "100000000.00"}


def terminal_config(url: str, backend: dict[str, Any] | None = None, sync: dict[str, Any] | None = None,
                    offline: dict[str, Any] | None = None, **sections: Any) -> Any:
    return config_from_mapping({
        "backend": {"url": url, **FAST_BACKEND, **(backend or {})},
        "sync": {**FAST_SYNC, **(sync or {})},
        "offline": {**ROOMY_OFFLINE, **(offline or {})},
        **sections,
    })


@pytest.fixture(scope="session")
def sandbox_session() -> Iterator[Sandbox]:
    sandbox = start_sandbox()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def sandbox(sandbox_session: Sandbox) -> Sandbox:
    """The session's sandbox backend, emptied and without faults."""
    sandbox_session.admin.reset()
    return sandbox_session


@pytest.fixture
def make_service(tmp_path: Path, clock: FixedClock) -> Iterator[Callable[..., Service]]:
    """Build services on a data directory (default: one per test) against a backend URL."""
    made: list[Service] = []

    def make(url: str, *, data_dir: Path | None = None, use_clock: bool = False, **config: Any) -> Service:
        svc = bootstrap(terminal_config(url, **config), data_dir or tmp_path / "terminal",
                        **({"clock": clock} if use_clock else {}))
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.close()


@pytest.fixture
def enrolled(sandbox: Sandbox, make_service: Callable[..., Service]) -> Service:
    """A terminal enrolled with the sandbox through the real enrolment flow."""
    svc = make_service(sandbox.url)
    svc.enrol_backend(sandbox.admin.enrolment_token(TERMINAL))
    return svc


def pay(svc: Service, minor: int, token: str | None = "tokA", **kw: Any):
    return svc.pay(PaymentRequest(Money(minor, svc.currency), Method.CARD, card_token=token),
                   CardFacts(scheme="unionpay", masked_pan="622202******1234", card_token=token), **kw)


def fill(svc: Service, n: int, minor: int = 1000, tokens: int = 20) -> list[str]:
    """n offline-approved sales (below the floor limit), spread over `tokens` card tokens."""
    ids = []
    for i in range(n):
        result = pay(svc, minor + i % 50, f"tok{i % tokens}")
        assert result.approved and result.auth_mode == "offline", result
        ids.append(result.row.id)
    return ids


def assert_exactly_once(sandbox: Sandbox, svc: Service, ids: list[str]) -> dict[str, Any]:
    """The backend holds every id exactly once, sequence numbers 1..n without gaps, and the
    terminal's queue is empty with every row answered."""
    stats = sandbox.admin.stats(TERMINAL)
    stored = sandbox.admin.transactions(TERMINAL)
    assert stats["stored"] == len(ids) == stats["distinct_ids"]
    assert sorted(t["id"] for t in stored) == sorted(ids)
    assert [t["seq"] for t in stored] == list(range(1, len(ids) + 1))
    assert stats["gaps"] == [] and stats["highest_contiguous_seq"] == len(ids)
    journal = svc.require_journal()
    assert journal.sync.queue_summary()["pending"] == 0
    states = journal.sync.sync_state_counts()
    assert states["accepted"] + states["duplicate"] + states["declined_after_offline"] == len(ids), states
    assert journal.verify().ok
    return stats
