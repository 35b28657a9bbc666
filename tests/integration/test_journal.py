"""The journal on real SQLite files: durability, signatures and hash chain, the authenticated state,
tamper detection."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from terminal.core.money import Money, currency
from terminal.journal import Journal, NewTransaction, record_hash
from terminal.security import load_or_create_keys, verify_signature

CNY = currency("CNY")
DAY = date(2026, 11, 23)
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def sale(amount: int = 1000, **kw) -> NewTransaction:
    base = dict(kind="sale", amount=Money(amount, CNY), method="card", decision="approved",
                reasons=("below_floor_limit",), auth_mode="offline", card_token="tokA",
                masked_pan="622202******1234", details={"aid": "A000000333010101"})
    base.update(kw)
    return NewTransaction(**base)


@pytest.fixture
def journal(tmp_path):
    keys = load_or_create_keys(tmp_path)
    j = Journal(tmp_path / "journal.sqlite3", keys, "TEST0001", now=T0)
    yield j
    j.close()


def fill(journal: Journal, n: int = 5) -> list:
    return [journal.txns.append(sale(1000 + i), now=T0 + timedelta(minutes=i), business_date=DAY) for i in range(n)]


def raw(journal: Journal) -> sqlite3.Connection:
    return sqlite3.connect(str(journal.path), isolation_level=None)


def test_pragmas_are_wal_and_full_sync(journal):
    assert journal.db.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal.db.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_append_is_visible_to_another_connection_when_it_returns(journal):
    row = journal.txns.append(sale(), now=T0, business_date=DAY)
    other = raw(journal)
    assert other.execute("SELECT id, amount, row_hash FROM txn").fetchall() == [(row.id, 1000,
                                                                                bytes.fromhex(row.row_hash))]


def test_rows_are_chained_then_signed(journal, tmp_path):
    rows = fill(journal, 3)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == "0" * 64
    assert rows[1].prev_hash == rows[0].row_hash and rows[2].prev_hash == rows[1].row_hash
    assert all(r.signature is None for r in rows)  # signed shortly after, off the payment's path
    assert journal.txns.sign_pending() == 3 and journal.txns.sign_pending() == 0
    pub = load_or_create_keys(tmp_path).public_key_bytes
    for r in rows:
        stored = journal.txns.get(r.id)
        assert stored is not None and stored.signed_record() == r.signed_record()
        assert record_hash(r.signed_record()) == r.row_hash
        assert verify_signature(pub, bytes.fromhex(stored.signature), bytes.fromhex(r.row_hash))
    assert journal.head().signed_seq == 3


def test_verify_passes_on_an_honest_journal(journal):
    fill(journal, 10)
    journal.audit.record("operator_sign_in", now=T0, actor="cashier1", details={"role": "cashier"})
    report = journal.verify()
    assert report.ok and report.rows_checked == 10 and report.audit_rows_checked == 1


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "problem"),
    [
        ("UPDATE txn SET amount = 1 WHERE seq = 3", 3, "edited"),
        ("UPDATE txn SET card_token = 'other' WHERE seq = 4", 4, "edited"),
        ("UPDATE txn SET details = '{\"aid\":\"A0\"}' WHERE seq = 2", 2, "edited"),
        ("DELETE FROM txn WHERE seq = 3", 3, "row 3 is missing"),
        ("DELETE FROM txn WHERE seq = 5", 5, "rows were removed from the end"),
        ("DELETE FROM txn WHERE seq >= 4", 4, "rows were removed from the end"),
        ("UPDATE txn SET seq = -seq WHERE seq IN (2, 3); UPDATE txn SET seq = 3 WHERE seq = -2;"
         " UPDATE txn SET seq = 2 WHERE seq = -3", 2, "previous-row hash does not match"),
        ("UPDATE txn SET reasons = 'not json' WHERE seq = 2", 2, "edited"),
        ("UPDATE txn SET currency = 'XXQ' WHERE seq = 2", 2, "edited"),
        ("UPDATE txn SET signature = 'zz-not-hex' WHERE seq = 2", 2, "signature is not 64 bytes"),
        ("UPDATE txn SET amount = '12.5' WHERE seq = 3", 3, "not a whole number"),
    ],
)
def test_verify_names_the_first_bad_row(journal, tamper, bad_seq, problem):
    fill(journal, 5)
    journal.txns.sign_pending()
    raw(journal).executescript(tamper)
    report = journal.verify()
    assert not report.ok
    assert report.first_bad_seq == bad_seq and report.table == "txn"
    assert problem in report.problem


def test_the_head_is_authenticated_and_a_forged_checkpoint_is_caught(journal):
    fill(journal, 4)
    journal.housekeeping(T0)
    assert journal.guard("checkpoint")["txn_seq"] == 4
    db = raw(journal)
    db.execute("UPDATE state SET value = replace(value, '|4|', '|3|') WHERE key = 'head'")
    report = journal.verify()
    assert not report.ok and report.table == "meta" and "MAC" in report.problem
    db.execute("UPDATE state SET value = replace(value, '\"txn_seq\":4', '\"txn_seq\":2') "
               "WHERE key = 'guard|checkpoint'")
    assert any("checkpoint does not match its MAC" in p for p in journal.verify().problems)


def test_a_re_hashed_edit_is_caught_by_the_chain_and_by_the_signature(journal):
    rows = fill(journal, 3)
    journal.txns.sign_pending()
    record = rows[1].signed_record()
    record["amount"] = 1
    forged = bytes.fromhex(record_hash(record))
    raw(journal).execute("UPDATE txn SET amount = 1, row_hash = ? WHERE seq = 2", (forged,))
    report = journal.verify()
    assert not report.ok and report.first_bad_seq == 3 and "previous-row hash" in report.problem
    report = journal.verify(signatures=True)
    assert not report.ok and report.first_bad_seq == 2 and "signature" in report.problem


def test_a_journal_checked_with_another_terminal_key_is_refused(journal, tmp_path):
    from terminal.journal.chain import verify_journal

    fill(journal, 2)
    journal.txns.sign_pending()
    other_keys = load_or_create_keys(tmp_path / "other")
    report = verify_journal(journal.path, other_keys, signatures=True)
    assert not report.ok and "another terminal key" in report.problem


def test_audit_chain_is_verified_too(journal):
    fill(journal, 2)
    for i in range(3):
        journal.audit.record("refund_approved", now=T0, actor="super1", details={"n": i})
    raw(journal).execute("UPDATE audit SET actor = 'someone' WHERE seq = 2")
    report = journal.verify()
    assert not report.ok and report.table == "audit" and report.first_bad_seq == 2


def test_sync_bookkeeping_does_not_break_the_chain(journal):
    rows = fill(journal, 3)
    journal.sync.note_sync_attempt([rows[0].id], "timeout")
    journal.sync.set_sync_results([(rows[0].id, "accepted", None), (rows[1].id, "declined_after_offline", "no_funds")],
                             now=T0)
    assert journal.verify().ok
    assert journal.txns.get(rows[1].id).sync_state == "declined_after_offline"
    assert [r.id for r in journal.sync.pending()] == [rows[2].id]


def test_totals_and_exposure(journal):
    journal.txns.append(sale(1000), now=T0, business_date=DAY)
    journal.txns.append(sale(2000, auth_mode="online"), now=T0, business_date=DAY)
    journal.txns.append(sale(4000, decision="declined"), now=T0, business_date=DAY)
    journal.txns.append(sale(8000), now=T0, business_date=DAY - timedelta(days=1))
    journal.txns.append(sale(500, card_token="tokB"), now=T0, business_date=DAY)
    with journal.session(now=T0) as session:
        totals = session.card_day("tokA", DAY)
        assert (totals.amount, totals.offline_amount, totals.offline_count) == (3000, 1000, 1)
        assert session.card_day(None, DAY).amount == 0
    assert journal.sync.unsynced_exposure(CNY) == Money(1000 + 8000 + 500, CNY)
    assert journal.verify().ok


def test_deny_list_versions(journal):
    journal.apply_deny_delta(3, [("tokA", "lost"), ("tokB", "fraud")], [], now=T0)
    assert journal.deny.contains("tokA") and journal.head().deny_version == 3
    journal.apply_deny_delta(4, [], ["tokA"], now=T0)
    assert not journal.deny.contains("tokA") and journal.deny.contains("tokB") and journal.head().deny_version == 4
    journal.deny_locally("tokC", "declined_after_offline", now=T0)
    assert journal.deny.contains("tokC") and journal.head().deny_count == 2


def test_floats_never_reach_the_journal(journal):
    with pytest.raises(ValueError, match="no floats"):
        journal.txns.append(sale(details={"amount": 1.5}), now=T0, business_date=DAY)
    assert journal.head().counts()["total"] == 0


def test_export_since(journal):
    fill(journal, 4)
    rows = list(journal.txns.rows_since(T0 + timedelta(minutes=2)))
    assert [r.seq for r in rows] == [3, 4]
    line = json.dumps(rows[0].to_dict())
    assert "622202******1234" in line


def test_journal_belongs_to_one_terminal(tmp_path, journal):
    from terminal.errors import StorageError

    with pytest.raises(StorageError, match="belongs to terminal TEST0001, not OTHER001"):
        Journal(journal.path, load_or_create_keys(tmp_path), "OTHER001")


@pytest.mark.slow
def test_crash_kill_9_loses_nothing_that_returned_and_doubles_nothing(tmp_path):
    """A writer appends as fast as it can and is killed with SIGKILL at random moments (25 kills).
    After each kill the journal verifies, and every id the writer printed (printed only after
    `append` returned) is present exactly once."""
    data = tmp_path / "crash"
    rng = random.Random(20261123)
    acknowledged: list[str] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for run in range(25):
        proc = subprocess.Popen([sys.executable, str(HERE / "journal_writer.py"), str(data), f"r{run}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the writer is appending now
        assert first, proc.stderr.read().decode() if proc.stderr else "writer died"
        time.sleep(rng.uniform(0.0, 0.08))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        lines = (first + out).decode().split("\n")
        acknowledged += [ln.split()[0] for ln in lines[:-1]]  # the last piece may be a torn line

        keys = load_or_create_keys(data)
        journal = Journal(data / "journal.sqlite3", keys, "CRASH001")
        try:
            report = journal.verify()
            assert report.ok, report.problems
            ids = [r.id for r in journal.txns.rows_since(None)]
        finally:
            journal.close()
        assert len(ids) == len(set(ids)), "a transaction was stored twice"
        missing = set(acknowledged) - set(ids)
        assert not missing, f"acknowledged appends lost after kill {run}: {sorted(missing)[:5]}"
        assert report.rows_checked == len(ids) >= len(acknowledged)
    assert len(acknowledged) > 25


def test_wallet_code_claim_is_atomic_with_the_payment(journal):
    from terminal.errors import CodeAlreadyUsed
    from terminal.journal import CodeClaim

    claim = CodeClaim("wallet-42", 7, "issuer-k1")
    row = journal.txns.append(sale(method="wallet_signed"), now=T0, business_date=DAY, claim=claim)
    assert journal.issuer_keys.code_used("wallet-42", 7) == row.id
    with pytest.raises(CodeAlreadyUsed, match="wallet-42/7 was already used"):
        journal.txns.append(sale(method="wallet_signed"), now=T0, business_date=DAY, claim=claim)
    assert journal.head().counts()["total"] == 1  # the replay stored nothing
    journal.txns.append(sale(method="wallet_signed"), now=T0, business_date=DAY, claim=CodeClaim("wallet-42", 8, "k1"))
    assert journal.verify().ok and journal.head().counts()["total"] == 2


def test_service_declines_a_replayed_wallet_code(service):
    from terminal.core.rules import Method, PaymentRequest
    from terminal.journal import CodeClaim
    from terminal.payment import CardFacts

    request = PaymentRequest(Money(500, CNY), Method.WALLET_SIGNED, card_token="wallet-9")
    first = service.pay(request, CardFacts(), claim=CodeClaim("wallet-9", 1, "k1"))
    replay = service.pay(request, CardFacts(), claim=CodeClaim("wallet-9", 1, "k1"))
    assert first.approved and not replay.approved
    assert replay.reasons == ("code_already_used",) and replay.row is not None and replay.row.decision == "declined"
    assert service.require_journal().issuer_keys.code_used("wallet-9", 1) == first.row.id
    assert service.verify_journal().ok
