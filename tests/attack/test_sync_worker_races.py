"""Finding 11: races in the sync worker's life cycle, forced with events. A worker is built from an
enrolled terminal's real parts (journal, backend client, rules) and talks HTTP to the real sandbox;
one part of each cycle, the merchant-code settlement step (or the wake-up event between two cycles),
is held by the test on an event, so the interleaving the race needs happens every time:

- `stop()` whose join times out while a cycle is still running, then `start()`: never two loops;
- a `nudge()` that lands between the loop's wait and its clear, or while a cycle runs after the
  cycle read the queue, is followed by a cycle that uploads the row it was for (the interval is a
  minute: only the nudge can bring that cycle).

Every wait is bounded; nothing sleeps to order threads."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from terminal.core.money import Money
from terminal.core.rules import Method, PaymentRequest
from terminal.errors import StorageError
from terminal.payment import CardFacts
from terminal.service import Service
from terminal.sync import SyncWorker
from tests.backend.conftest import TERMINAL

pytestmark = pytest.mark.timeout(60)
WAIT = 10.0  # the longest any event is waited for


class Held:
    """A step of the cycle the test holds: `entered` when a cycle reaches it, it returns once `release`
    is set (while `hold` is set); counts how many cycles are in it at once."""

    def __init__(self) -> None:
        self.hold, self.entered, self.release = threading.Event(), threading.Event(), threading.Event()
        self._lock = threading.Lock()
        self.inside = self.most_inside = self.calls = 0
        self.threads: list[threading.Thread] = []

    def __call__(self) -> int:
        with self._lock:
            self.calls += 1
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.threads.append(threading.current_thread())
        self.entered.set()
        if self.hold.is_set():
            self.release.wait(WAIT)
        with self._lock:
            self.inside -= 1
        return 0


class Cycles:
    """The worker's housekeeping hook, called at the end of every cycle: counts cycles and lets the
    test wait for the next one."""

    def __init__(self, housekeeping: Callable[[], None]) -> None:
        self._housekeeping = housekeeping
        self._done = threading.Condition()
        self.count = 0

    def __call__(self) -> None:
        self._housekeeping()
        with self._done:
            self.count += 1
            self._done.notify_all()

    def wait_for(self, count: int) -> bool:
        with self._done:
            return self._done.wait_for(lambda: self.count >= count, WAIT)


class GatedWake(threading.Event):
    """The loop's wake-up event with a gate right after `wait` returns: while `armed`, the loop stops
    there (`in_gap`) until `go_on`, so a nudge can land exactly between its wait and its clear."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.in_gap, self.go_on = threading.Event(), threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        woke = super().wait(timeout)
        if self.armed:
            self.armed = False
            self.in_gap.set()
            self.go_on.wait(WAIT)
        return woke


class GatedWorker(SyncWorker):
    """The real worker; only its wake-up event is the gated one above (the one place a test cannot
    reach with the worker's own parts)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._wake = GatedWake()


@pytest.fixture
def parts(enrolled: Service) -> Iterator[tuple[Service, Held, Cycles, list[SyncWorker]]]:
    held, cycles, made = Held(), Cycles(enrolled.housekeeping), []
    yield enrolled, held, cycles, made
    held.release.set()
    for worker in made:
        if isinstance(worker._wake, GatedWake):
            worker._wake.go_on.set()
        assert worker.stop(WAIT)


def worker_of(svc: Service, held: Held, cycles: Cycles, made: list[SyncWorker], *, kind: type[SyncWorker] = SyncWorker,
              interval_ms: int = 60_000) -> SyncWorker:
    assert svc.backend is not None
    worker = kind(svc.require_journal(), svc.backend, sync_config=dataclasses.replace(svc.config.sync,
                                                                                        interval_ms=interval_ms),
                  clock=svc.clock, rules=svc.payments.rules, housekeeping=cycles, settle_merchant_codes=held)
    made.append(worker)
    return worker


def sync_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "walletpos-sync" and t.is_alive() and t not in before]


def pay(svc: Service, minor: int) -> None:
    result = svc.pay(PaymentRequest(Money(minor, svc.currency), Method.CARD, card_token="tokRace"),
                     CardFacts(scheme="visa", card_token="tokRace", masked_pan="476173******0010"))
    assert result.approved and result.auth_mode == "offline"


def test_a_start_after_a_stop_that_timed_out_never_runs_a_second_loop(parts):
    svc, held, cycles, made = parts
    before = set(threading.enumerate())
    worker = worker_of(svc, held, cycles, made)
    held.hold.set()
    worker.start()
    assert held.entered.wait(WAIT)  # loop 1 is inside a cycle and stays there
    stopped = worker.stop(timeout=0.05)  # its join times out: the cycle is still running
    loops_after_stop = len(sync_threads(before))
    with pytest.raises(StorageError, match="still finishing a cycle"):
        worker.start(old_loop_timeout=0.05)  # refused, instead of a second loop beside the first
    loops_after_refused_start = len(sync_threads(before))

    starter = threading.Thread(target=worker.start, kwargs={"old_loop_timeout": WAIT})
    starter.start()  # this start waits for the old loop to end
    starter.join(0.2)
    waiting = starter.is_alive()
    loops_while_waiting = len(sync_threads(before))
    held.entered.clear()
    held.hold.clear()
    held.release.set()  # the old cycle ends; the old loop sees its stop and ends; the new loop starts
    starter.join(WAIT)
    assert held.entered.wait(WAIT)  # the new loop ran a cycle
    loops_now = sync_threads(before)
    print(f"\nstop() timed out: {not stopped}; sync loops after it {loops_after_stop}, after a refused start "
          f"{loops_after_refused_start}, while a start waited {loops_while_waiting}, after it "
          f"{len(loops_now)}; at most {held.most_inside} cycle(s) at once in {held.calls} cycles on "
          f"{len(set(held.threads))} threads")
    assert stopped is False and worker.running
    assert loops_after_stop == loops_after_refused_start == loops_while_waiting == 1 and waiting
    assert not starter.is_alive() and len(loops_now) == 1 and worker.running
    assert held.most_inside == 1 and len(set(held.threads)) == 2  # the old loop's thread, then the new one's
    assert loops_now[0] is held.threads[-1] and not held.threads[0].is_alive()


def test_a_nudge_between_the_loops_wait_and_its_clear_is_served(parts, sandbox):
    svc, held, cycles, made = parts
    worker = worker_of(svc, held, cycles, made, kind=GatedWorker)
    wake = worker._wake
    assert isinstance(wake, GatedWake)
    worker.start()
    assert cycles.wait_for(1)  # the first cycle is done; the loop waits a minute for the next
    wake.armed = True
    worker.nudge()  # wakes the loop, which stops right after its wait returned
    assert wake.in_gap.wait(WAIT)
    pay(svc, 1234)
    worker.nudge()  # lands between the wait and the clear
    wake.go_on.set()
    served = cycles.wait_for(2)
    stored = sandbox.admin.stats(TERMINAL)["stored"]
    print(f"\nnudge between wait and clear: a cycle followed: {served}; rows at the backend {stored}; "
          f"cycles {cycles.count}")
    assert served and stored == 1 and svc.queue_summary().pending == 0


def test_a_nudge_during_a_cycle_brings_another_cycle_at_once(parts, sandbox):
    svc, held, cycles, made = parts
    worker = worker_of(svc, held, cycles, made)
    worker.start()
    assert cycles.wait_for(1)
    held.entered.clear()
    held.hold.set()
    worker.nudge()
    assert held.entered.wait(WAIT)  # cycle 2 has uploaded what was queued and is settling merchant codes
    pay(svc, 4321)  # written after this cycle read the queue
    worker.nudge()
    held.hold.clear()
    held.release.set()
    served = cycles.wait_for(3)  # only the nudge can bring cycle 3 within the minute's interval
    stored = sandbox.admin.stats(TERMINAL)["stored"]
    print(f"\nnudge during a cycle: another cycle followed: {served}; rows at the backend {stored}; "
          f"cycles {cycles.count}")
    assert served and stored == 1 and svc.queue_summary().pending == 0
