"""The fast service-level layer: the whole payment path (rules, exposure, the journal on a real SQLite
file, the card kernel on the in-process simulated reader) built by the one bootstrap, with the wallet
backend replaced by `ScriptedAuthorizer`.

The authorizer is a stand-in, on purpose: the real backend over HTTP (the sandbox, its signatures,
its faults) is tested in tests/backend and tests/integration; here a rule or a payment-path change is
tested in milliseconds, without a server, by deciding in the test what the backend answers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers.sim.cards import make_card
from drivers.simreader import SimReader
from terminal.bootstrap import bootstrap
from terminal.config import config_from_mapping
from terminal.core.money import Money
from terminal.core.rules import PaymentRequest
from terminal.payment import OnlineAnswer
from terminal.service import Service
from tests.conftest import FixedClock


@dataclass
class ScriptedAuthorizer:
    """The wallet backend as the payment path sees it (`terminal.payment.OnlineAuthorizer`), answering
    what the test sets: `answer` (None is a timeout or an unreadable answer), `up` for `reachable()`.
    Every request it is asked is kept in `asked`."""

    up: bool = True
    answer: OnlineAnswer | None = field(default_factory=lambda: OnlineAnswer(True, None, "A1B2C3"))
    asked: list[tuple[PaymentRequest, str, dict[str, Any]]] = field(default_factory=list)

    def reachable(self) -> bool:
        return self.up

    def authorize(self, request: PaymentRequest, txn_id: str, facts: Mapping[str, Any]) -> OnlineAnswer | None:
        self.asked.append((request, txn_id, dict(facts)))
        return self.answer


@pytest.fixture
def authorizer() -> ScriptedAuthorizer:
    return ScriptedAuthorizer()


@pytest.fixture
def fast(tmp_path: Path, clock: FixedClock, authorizer: ScriptedAuthorizer) -> Iterator[Service]:
    """A terminal on the embedded defaults with the backend link off and `authorizer` in its place."""
    service = bootstrap(config_from_mapping({"backend": {"enabled": False}}), tmp_path / "data", clock=clock,
                        authorizer=authorizer, env={})
    yield service
    service.close()


def tap(service: Service, profile: str, minor: int, **card: object):
    """Tap a virtual card of `profile` on the simulated reader and pay `minor` with it."""
    reader = SimReader()
    reader.tap(make_card(profile, **card))
    session = reader.wait_for_card(1.0)
    assert session is not None
    with session:
        return service.pay_card(session, Money(minor, service.currency))
