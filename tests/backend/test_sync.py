"""Store-and-forward against the real sandbox backend over HTTP on 127.0.0.1 (no mocks): rows reach
the backend exactly once whatever the network does, and what the backend says comes back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sandbox import start_sandbox
from terminal.core.money import Money
from terminal.core.rules import Decision, Method, PaymentRequest
from terminal.journal import utc_text
from terminal.security import verify_signature
from tests.backend.conftest import TERMINAL, assert_exactly_once, fill, pay

pytestmark = pytest.mark.timeout(120)


def test_offline_queue_is_delivered_exactly_once_when_the_backend_comes_back(tmp_path: Path, make_service):
    """Backend down (connection refused) -> payments approved offline and queued -> the checkout
    stops asking the dead backend -> backend back on the same port and data -> every row accepted
    once, none sent twice."""
    db = tmp_path / "backend.sqlite3"
    first = start_sandbox(db_path=db)
    port, token = first.port, first.admin.enrolment_token(TERMINAL)
    svc = make_service(first.url)
    svc.enrol_backend(token)
    first.stop()  # the backend goes away

    ids = fill(svc, 40)
    for _ in range(3):  # the worker's attempts fail and open the circuit
        report = svc.sync_once(force=False)
        assert not report.ok and "connection failed" in report.error
    assert svc.backend.breaker.state == "open"
    assert svc.payments.online.reachable() is False
    big = pay(svc, 25000, "tokBig")  # above the floor limit: would go online, but the backend is not asked
    assert big.approved and big.auth_mode == "offline" and "online" not in big.timings_ms
    ids.append(big.row.id)
    status = svc.sync_status()
    assert status.queue_depth == 41 and status.last_success_at is None and "connection failed" in status.last_error

    again = start_sandbox(db_path=db, port=port)  # the backend comes back
    try:
        reports = svc.run_sync(timeout_s=30)
        assert reports[-1].ok and reports[-1].queue_after == 0
        stats = assert_exactly_once(again, svc, ids)
        assert stats["duplicates_received"] == 0 and stats["statuses"] == {"accepted": 41}
        assert svc.require_journal().sync.sync_state_counts()["accepted"] == 41
        assert svc.sync_status().last_success_at is not None
        assert svc.last_sync_at() > svc.require_journal().installed_at
    finally:
        again.stop()


def test_2000_transactions_through_30_percent_faults_arrive_exactly_once(sandbox, make_service):
    """Errors (before and after the backend committed), resets, timeouts, malformed answers and
    Retry-After on 30% of requests: the backend ends with exactly 2,000 rows, no duplicates, no gaps,
    and the terminal's queue is empty."""
    enrolled = make_service(sandbox.url, backend={"request_timeout_ms": 400}, sync={"batch_size": 100})
    enrolled.enrol_backend(sandbox.admin.enrolment_token(TERMINAL))
    ids = fill(enrolled, 2000, tokens=200)
    # every request has a 30% chance to go wrong; the kinds take turns so each one shows up
    sandbox.admin.faults(rate=0.3, timeout_ms=700, retry_after_s=1, seed=20261123, cycle=True)
    reports = enrolled.run_sync(timeout_s=90)
    faults = sandbox.admin.stats(TERMINAL)["faults"]["injected"]
    sandbox.admin.faults_off()
    assert reports[-1].ok and reports[-1].queue_after == 0, reports[-1].lines()
    stats = assert_exactly_once(sandbox, enrolled, ids)
    failed = [r for r in reports if not r.ok]
    assert failed, "the fault plan must have broken some cycles"
    for kind in ("error", "reset", "timeout", "malformed", "retry_after"):
        assert faults.get(kind, 0) > 0, f"no {kind} fault was injected: {faults}"
    # answers lost after the commit made the terminal send rows again: the backend said "duplicate"
    assert stats["duplicates_received"] > 0
    assert stats["duplicates_received"] == stats["times_received"] - 2000
    journal = enrolled.require_journal()
    assert sum(r.sync_attempts for r in journal.txns.rows_since()) > 0


def test_unreadable_answers_are_errors_and_no_row_is_lost(sandbox, enrolled):
    """Every answer malformed (cut-off JSON, HTML, wrong shape, a missing per-row result): the cycle
    fails, every row stays queued with its attempt counted, and later all arrive exactly once."""
    ids = fill(enrolled, 30)
    sandbox.admin.faults(rate=1.0, kinds=["malformed"], paths=["/v1/transactions/batches"], seed=1)
    for _ in range(4):
        report = enrolled.sync_once()
        assert not report.ok and report.queue_after == 30
        assert "answer" in report.error or "not JSON" in report.error
    journal = enrolled.require_journal()
    rows = list(journal.txns.rows_since())
    assert all(r.sync_state == "pending" and r.sync_attempts == 4 and r.sync_error for r in rows)
    assert sandbox.admin.stats(TERMINAL)["stored"] == 30  # the backend did store them each time
    sandbox.admin.faults_off()
    report = enrolled.sync_once()
    assert report.ok and report.duplicate == 30 and report.accepted == 0
    stats = assert_exactly_once(sandbox, enrolled, ids)
    assert stats["times_received"] == 5 * 30


def test_declined_after_offline_end_to_end(sandbox, enrolled):
    """The backend marks a wallet out of funds; its offline approvals come back declined after sync;
    the rows are kept and marked for the day report; the token is denied offline on the next tap."""
    ok = pay(enrolled, 2000, "tokPoor")
    other = pay(enrolled, 2000, "tokRich")
    assert ok.auth_mode == other.auth_mode == "offline" and ok.approved
    sandbox.admin.out_of_funds("tokPoor")
    report = enrolled.sync_once()
    assert report.ok and report.declined_after_offline == 1 and report.accepted == 1
    assert report.declined[0]["seq"] == ok.row.seq and report.declined[0]["reason"] == "insufficient_funds"
    journal = enrolled.require_journal()
    row = journal.txns.get(ok.row.id)
    assert row.decision == "approved" and row.sync_state == "declined_after_offline"
    assert row.sync_reason == "insufficient_funds"
    day = journal.txns.rows_for_day(ok.row.business_date)
    assert [r.sync_state for r in day] == ["declined_after_offline", "accepted"]
    assert journal.head().counts()["declined_after_offline"] == 1
    assert journal.deny.contains("tokPoor") and not journal.deny.contains("tokRich")
    assert enrolled.sync_status().declined_after_offline == 1

    nxt = pay(enrolled, 500, "tokPoor")
    assert not nxt.approved and nxt.reasons == ("deny_listed",)
    assert pay(enrolled, 500, "tokRich").approved
    # the backend keeps the decline too, and says so again if asked (e.g. after a lost answer)
    stored = {t["id"]: t for t in sandbox.admin.transactions(TERMINAL)}
    assert stored[ok.row.id]["status"] == "declined_after_offline"


def test_lost_answer_of_a_declined_row_still_reports_the_decline(sandbox, enrolled):
    """The backend stores a decline but its answer is lost: the resend is a duplicate that carries
    the original outcome, so the terminal still marks the row and denies the token."""
    row = pay(enrolled, 3000, "tokLost").row
    sandbox.admin.out_of_funds("tokLost")
    sandbox.admin.faults(rate=1.0, kinds=["error"], paths=["/v1/transactions/batches"], count=1, seed=3)
    while True:  # error before or after processing, drawn at random: repeat until it hit after commit
        first = enrolled.sync_once()
        assert not first.ok
        if sandbox.admin.stats(TERMINAL)["stored"] == 1:
            break
        sandbox.admin.faults(rate=1.0, kinds=["error"], paths=["/v1/transactions/batches"], count=1)
    sandbox.admin.faults_off()
    report = enrolled.sync_once()
    assert report.ok and report.duplicate == 1 and report.declined_after_offline == 1
    journal = enrolled.require_journal()
    assert journal.txns.get(row.id).sync_state == "declined_after_offline"
    assert journal.deny.contains("tokLost")


def test_deny_list_deltas_reach_the_rules(sandbox, enrolled):
    sandbox.admin.deny("tokStolen", "lost_card")
    sandbox.admin.deny("tokTemp")
    report = enrolled.sync_once()
    assert report.ok and report.deny_list == {"version": 2, "added": 2, "removed": 0}
    journal = enrolled.require_journal()
    assert journal.head().deny_version == 2
    assert pay(enrolled, 500, "tokStolen").reasons == ("deny_listed",)
    sandbox.admin.allow("tokTemp")
    assert enrolled.sync_once().deny_list == {"version": 3, "added": 0, "removed": 1}
    assert not journal.deny.contains("tokTemp") and journal.deny.contains("tokStolen")
    assert pay(enrolled, 500, "tokTemp").approved
    assert enrolled.sync_once().deny_list == {}  # nothing new: no download


def test_deny_list_pages_and_backend_reset(sandbox, enrolled):
    """Deltas come in pages; a backend that lost its history answers `reset`, and the terminal
    replaces the backend-sourced entries but keeps its own (declined after offline)."""
    for i in range(12):
        sandbox.admin.deny(f"tokD{i}")
    client = enrolled.backend
    first = client.deny_delta(0, limit=5)
    assert first.has_more and len(first.added) == 5 and first.version == 5
    assert enrolled.sync_once().deny_list["added"] == 12
    journal = enrolled.require_journal()
    journal.deny_locally("tokMine", "declined_after_offline:insufficient_funds", now=enrolled.clock())
    sandbox.admin.reset()  # the backend forgets everything, enrolment included
    sandbox.admin.register_terminal(TERMINAL, enrolled.keys.public_key_bytes)
    sandbox.admin.deny("tokNew")
    report = enrolled.sync_once()
    assert report.ok, report.error
    assert [t for t, _, _ in journal.deny.entries()] == ["tokMine", "tokNew"]


def test_backend_limits_only_tighten_and_survive_a_restart(sandbox, enrolled, make_service):
    """Backend limits: a lower floor limit sends 60.00 online; a higher offline cap than the local
    one is ignored; limits in another currency are not applied."""
    before = enrolled.rule_set
    sandbox.admin.set_limits("CNY", floor_limit=5000, offline_max_payment=99_999_900, card_daily_count=3)
    report = enrolled.sync_once()
    assert report.ok and report.limits_version == 1
    assert report.limits_applied == ["floor_limit", "card_daily_count"]
    rules = enrolled.rule_set
    assert rules.floor_limit.minor == 5000 and rules.card_daily_count == 3
    assert rules.offline_max_payment == before.offline_max_payment
    outcome, _ = enrolled.explain(PaymentRequest(Money(6000, enrolled.currency), Method.CARD))
    assert outcome.decision is Decision.GO_ONLINE
    data_dir = enrolled.data_dir
    enrolled.close()
    restarted = make_service(sandbox.url, data_dir=data_dir)
    assert restarted.rule_set.floor_limit.minor == 5000  # stored in the journal, applied at start
    sandbox.admin.set_limits("USD", floor_limit=1)
    assert restarted.sync_once().limits_applied == []
    assert restarted.rule_set.floor_limit == before.floor_limit


def test_issuer_keys_and_the_minting_hook(sandbox, enrolled):
    """Issuer keys come down with their version; bytes signed by the sandbox's minting hook verify
    with the downloaded key; a retired key disappears."""
    key = sandbox.admin.new_issuer_key("K1")
    sandbox.admin.new_issuer_key("K2")
    assert enrolled.sync_once().issuer_keys_version == 2
    journal = enrolled.require_journal()
    keys = journal.issuer_keys.all()
    assert keys["K1"].hex() == key["public_key"] and set(keys) == {"K1", "K2"}
    payload = b"wallet-code:W123:counter=7:amount=1500"
    signature = sandbox.admin.issuer_sign("K1", payload)
    assert verify_signature(keys["K1"], signature, payload)
    assert not verify_signature(keys["K2"], signature, payload)
    sandbox.admin.retire_issuer_key("K2")
    assert enrolled.sync_once().issuer_keys_version == 3
    assert set(journal.issuer_keys.all()) == {"K1"}


def test_sealing_key_rotation_reaches_the_terminal(sandbox, enrolled):
    from terminal.security import seal_for_backend

    old = enrolled.backend_sealing_key()
    rotated = sandbox.admin.rotate_sealing_key()
    assert enrolled.sync_once().sealing_key_id == rotated["key_id"]
    new = enrolled.backend_sealing_key()
    assert new != old and new.hex() == rotated["public_key"]
    sealed = seal_for_backend(new, b'{"pan":"6222020000001234"}')
    assert sandbox.admin.open_sealed(sealed) == b'{"pan":"6222020000001234"}'


def test_rows_the_backend_lost_are_sent_again(sandbox, enrolled):
    """The backend loses stored rows; its gap report makes the terminal queue them again, and the
    next cycle restores them."""
    ids = fill(enrolled, 10)
    assert enrolled.sync_once().accepted == 10
    assert sandbox.admin.forget(TERMINAL, [3, 4, 7]) == 3
    ids += fill(enrolled, 1)
    report = enrolled.sync_once()
    assert report.ok and report.gaps == [(3, 4), (7, 7)] and report.requeued == 3
    assert enrolled.sync_once().accepted == 3
    assert_exactly_once(sandbox, enrolled, ids)


def test_retry_after_is_honoured_within_its_cap(sandbox, enrolled):
    fill(enrolled, 3)
    sandbox.admin.faults(rate=1.0, kinds=["retry_after"], retry_after_s=2, count=1)
    report = enrolled.sync_once()
    assert not report.ok and report.retry_after_s == 2.0
    worker = enrolled.sync_worker
    worker._failures = 0
    assert 2.0 <= worker._delay_after(report) <= 2.05
    report.retry_after_s = 3600  # a backend asking for an hour gets the configured maximum (3 s in tests)
    assert worker.retry_delay(1, report.retry_after_s) == 3.0
    assert enrolled.sync_once().ok


def test_backoff_doubles_with_jitter_up_to_its_maximum(enrolled):
    worker = enrolled.sync_worker  # backoff 5 ms doubling, at most 50 ms
    for failures, ceiling in ((1, 0.005), (2, 0.01), (3, 0.02), (4, 0.04), (5, 0.05), (30, 0.05)):
        delays = [worker.retry_delay(failures) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jitter: retries of many terminals do not line up


def test_clock_skew_is_corrected_for_signing(sandbox, enrolled):
    """The backend's clock is 10 minutes ahead: the first request is refused as stale, the client
    signs with the backend's time from then on, and the cycle succeeds."""
    sandbox.admin.clock(600)
    report = enrolled.sync_once()
    assert report.ok, report.error
    assert report.clock_skew_ms is not None and -601_000 < report.clock_skew_ms < -599_000
    assert enrolled.sync_once().requests == 1  # no more stale-timestamp refusals


def test_background_worker_drains_the_queue(sandbox, enrolled):
    ids = fill(enrolled, 25)
    enrolled.start_sync()
    deadline = time.monotonic() + 20
    while enrolled.sync_status().queue_depth and time.monotonic() < deadline:
        time.sleep(0.05)
    status = enrolled.sync_status()
    assert status.worker_running and status.queue_depth == 0
    enrolled.stop_sync()
    assert not enrolled.sync_status().worker_running
    assert_exactly_once(sandbox, enrolled, ids)


def test_last_sync_time_feeds_the_offline_rules(sandbox, make_service, clock):
    """Sync age: once the last successful sync is older than max_hours_since_sync, offline approvals
    stop; a successful sync records last_sync_ok_at and they resume."""
    svc = make_service(sandbox.url, use_clock=True, offline={"max_hours_since_sync": 1})
    svc.enrol_backend(sandbox.admin.enrolment_token(TERMINAL))
    clock.advance(hours=2)
    sandbox.admin.faults(rate=1.0, kinds=["error"])
    for _ in range(3):  # the backend fails: the circuit opens, so the rules decide alone
        assert not svc.sync_once().ok
    late = pay(svc, 1000, "tokX")
    assert not late.approved and "sync_too_old" in late.reasons and late.auth_mode == "offline"
    sandbox.admin.faults_off()
    assert svc.sync_once().ok
    assert svc.require_journal().head().last_sync_ok_at == utc_text(clock.now)
    assert pay(svc, 1000, "tokX").approved


def test_a_row_the_backend_refuses_as_invalid_does_not_hold_up_the_queue(sandbox, enrolled):
    """A row the contract refuses (here a card token with a character it does not allow) is found by
    splitting the batch, marked rejected and kept; every other row is delivered."""
    ids = fill(enrolled, 9)
    bad = pay(enrolled, 777, "bad:token")
    assert bad.approved
    ids += fill(enrolled, 6)
    report = enrolled.sync_once()
    assert report.rejected == 1
    journal = enrolled.require_journal()
    row = journal.txns.get(bad.row.id)
    assert row.sync_state == "rejected" and row.sync_reason.startswith("invalid:")
    stored = sorted(t["id"] for t in sandbox.admin.transactions(TERMINAL))
    assert stored == sorted(ids) and journal.sync.queue_summary()["pending"] == 0
    assert journal.verify().ok


def test_a_retry_soon_after_an_answered_heartbeat_goes_straight_to_the_rows(sandbox, enrolled):
    """A batch that fails after the heartbeat was answered: the backend is up, so the retry backs
    off from the start and sends the rows without asking for news it got seconds ago."""
    row = pay(enrolled, 500, "tokRetry").row
    sandbox.admin.faults(rate=1.0, kinds=["reset"], paths=["/v1/transactions/batches"], count=1)
    first = enrolled.sync_once()
    assert not first.ok and first.heartbeat_ok and not first.heartbeat_reused
    worker = enrolled.sync_worker
    worker._failures = 4  # as after a run of failed cycles
    ceiling = enrolled.config.sync.backoff_initial_ms / 1000  # the first step of the backoff
    assert worker._delay_after(first) <= max(ceiling, worker.client.breaker.seconds_until_probe())
    assert worker._failures == 1
    sandbox.admin.faults_off()
    second = enrolled.sync_once()
    assert second.ok and second.heartbeat_reused and second.requests == 1
    # the reset may have come before or after the backend stored the row: exactly once either way
    assert enrolled.require_journal().txns.get(row.id).sync_state in ("accepted", "duplicate")
    assert sandbox.admin.stats(TERMINAL)["stored"] == 1
    third = enrolled.sync_once()  # after a success the next cycle exchanges news again
    assert third.ok and third.heartbeat_ok and not third.heartbeat_reused


@pytest.mark.parametrize("kind, grows", [("error", False), ("malformed", False), ("reset", True)])
def test_the_backoff_grows_on_silence_not_on_the_backends_own_error_answers(sandbox, enrolled, kind, grows):
    """A heartbeat answered with the backend's own 500 (or with an answer it sent garbled) shows a
    backend that is up: the retry backs off from the start. A reset connection is silence: the
    backoff grows. (A backend answering errors to everything is held off by the circuit breaker.)"""
    pay(enrolled, 500, "tokBackoff")
    sandbox.admin.faults(rate=1.0, kinds=[kind], paths=["/v1/heartbeat"], count=1)
    worker = enrolled.sync_worker
    worker._last_cycle_failed = False  # a fresh cycle: it starts with the heartbeat
    report = enrolled.sync_once()
    assert not report.ok and not report.heartbeat_ok and report.backend_answered is not grows
    worker._failures = 4  # as after a run of failed cycles
    worker._delay_after(report)
    assert worker._failures == (5 if grows else 1)
    sandbox.admin.faults_off()
    assert enrolled.sync_once().ok
