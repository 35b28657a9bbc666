"""Retention on real SQLite files: rows the backend holds leave the device after `keep_days`, behind
the signed chain; verify stays green; an unsent or rejected row never leaves; sealed card data goes
once the backend accepted its row, and the signed record still verifies."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta

import pytest

from terminal.core.money import Money, currency
from terminal.journal import Journal, NewTransaction
from terminal.journal.chain import verify_journal
from terminal.security import load_or_create_keys

CNY = currency("CNY")
DAY0 = date(2026, 10, 1)
T0 = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)


def sale(i: int, **kw) -> NewTransaction:
    base = dict(kind="sale", amount=Money(1000 + i, CNY), method="card", decision="approved" if i % 7 else "declined",
                reasons=("below_floor_limit",), auth_mode="offline", card_token=f"tok{i % 13}",
                masked_pan="622202******1234", sealed_card=f"sealed-blob-{i:05d}-" + "x" * 400)
    base.update(kw)
    return NewTransaction(**base)


@pytest.fixture
def keys(tmp_path):
    return load_or_create_keys(tmp_path)


@pytest.fixture
def journal(tmp_path, keys):
    j = Journal(tmp_path / "journal.sqlite3", keys, "TEST0001", now=T0)
    yield j
    j.close()


def days_of_rows(journal: Journal, days: int, per_day: int) -> list:
    rows = []
    for d in range(days):
        for i in range(per_day):
            now = T0 + timedelta(days=d, minutes=i)
            rows.append(journal.txns.append(sale(d * per_day + i), now=now, business_date=DAY0 + timedelta(days=d)))
    return rows


def accept(journal: Journal, rows, now: datetime, state: str = "accepted") -> None:
    journal.sync.set_sync_results([(r.id, state, None) for r in rows], now=now)


def verified(journal: Journal, keys) -> None:
    report = verify_journal(journal.path, keys, signatures=True)
    assert report.ok, report.problems
    assert journal.verify().ok


def test_old_accepted_rows_leave_unsent_and_rejected_ones_stay_and_verify_stays_green(journal, keys):
    rows = days_of_rows(journal, days=10, per_day=30)  # 300 rows over 10 business days
    now = T0 + timedelta(days=10)
    unsent = rows[45]  # day 1, never answered by the backend
    rejected = rows[130]  # day 4
    accept(journal, [r for r in rows if r.seq not in (unsent.seq, rejected.seq)], now)
    accept(journal, [rejected], now, "rejected")
    before = journal.head()
    exposure = before.exposure
    result = journal.archive(keep_days=3, today=DAY0 + timedelta(days=10), now=now)
    head = journal.head()
    kept = {r.seq for r in journal.txns.rows("WHERE 1", ())}
    print(f"\n300 rows over 10 days, keep 3 days: {result.to_dict()}; {len(kept)} rows kept")
    # the run stops at the first row the backend does not hold: nothing after it leaves either
    assert result.archived == unsent.seq - 1 and result.stopped_by == "unsent"
    assert head.archived_seq == unsent.seq - 1 and min(kept) == unsent.seq
    assert unsent.seq in kept and rejected.seq in kept and len(kept) == 300 - result.archived
    assert head.exposure == exposure and head.pending == before.pending == 1 and head.rejected == 1
    assert head.approved + head.declined == len(kept) and head.counts()["total"] == len(kept)
    verified(journal, keys)
    audit = journal.audit.rows(3)
    assert audit[0]["event"] == "journal_archived" and audit[0]["details"]["rows"] == result.archived

    # the unsent row is answered, the rejected one written off by a technician: the next run goes to the cutoff
    accept(journal, [unsent], now)
    journal.sync.resolve_rejected([rejected.seq], now=now, actor="tech1", note="case 7")
    result = journal.archive(keep_days=3, today=DAY0 + timedelta(days=10), now=now)
    kept = {r.seq for r in journal.txns.rows("WHERE 1", ())}
    print(f"after the sync: {result.to_dict()}; {len(kept)} rows kept")
    assert result.stopped_by is None and min(kept) == 7 * 30 + 1  # days 7, 8 and 9 stay
    assert all(r.business_date >= DAY0 + timedelta(days=7) for r in journal.txns.rows("WHERE 1", ()))
    verified(journal, keys)


def test_the_journal_keeps_working_and_verifying_after_archiving_and_a_restart(tmp_path, journal, keys):
    rows = days_of_rows(journal, days=5, per_day=20)
    now = T0 + timedelta(days=5)
    accept(journal, rows, now)
    assert journal.archive(keep_days=2, today=DAY0 + timedelta(days=5), now=now).archived == 60
    journal.close()
    again = Journal(tmp_path / "journal.sqlite3", keys, "TEST0001", now=now)  # the anchor file agrees
    try:
        assert again.integrity_problem() is None
        new = again.txns.append(sale(999), now=now, business_date=DAY0 + timedelta(days=5))
        assert new.seq == 101 and new.prev_hash == rows[-1].row_hash
        again.housekeeping(now)
        verified(again, keys)
        again.archive(keep_days=2, today=DAY0 + timedelta(days=5), now=now)
        verified(again, keys)
    finally:
        again.close()


def test_an_edited_row_is_never_archived_away(journal, keys):
    """The checkpoint had vouched for row 5 before someone edited it: the archive run finds the edit,
    keeps the row (the evidence) and puts the journal on hold."""
    rows = days_of_rows(journal, days=4, per_day=10)
    now = T0 + timedelta(days=4)
    accept(journal, rows, now)
    journal.housekeeping(now)
    db = sqlite3.connect(journal.path)
    db.execute("UPDATE txn SET amount = 1 WHERE seq = 5")
    db.commit()
    db.close()
    result = journal.archive(keep_days=1, today=DAY0 + timedelta(days=4), now=now)
    report = verify_journal(journal.path, keys)
    print(f"\nrow 5 edited, then archive: {result.to_dict()}; hold: {journal.integrity_problem()}")
    assert result.archived == 0 and result.stopped_by == "damage"
    assert "row 5" in (journal.integrity_problem() or "")
    assert not report.ok and any(p.startswith("txn row 5:") for p in report.problems)
    again = journal.archive(keep_days=1, today=DAY0 + timedelta(days=4), now=now)
    assert again.archived == 0 and again.stopped_by == "hold"


def test_sealed_card_data_leaves_once_the_backend_accepted_the_row(journal, keys):
    rows = days_of_rows(journal, days=1, per_day=5)
    now = T0 + timedelta(hours=1)
    accept(journal, rows[:3], now)
    accept(journal, rows[3:4], now, "rejected")
    stored = {r.seq: r for r in journal.txns.rows("WHERE 1", ())}
    assert [stored[s].sealed_card is None for s in range(1, 6)] == [True, True, True, False, False]
    assert all(stored[s].sealed_card_sha256 == rows[s - 1].sealed_card_sha256 for s in stored)
    verified(journal, keys)
    # a sealed blob swapped for another row's is caught: the signed record carries its digest
    db = sqlite3.connect(journal.path)
    db.execute("UPDATE sealed_card SET data = (SELECT data FROM sealed_card WHERE seq = 5) WHERE seq = 4")
    db.commit()
    db.close()
    report = verify_journal(journal.path, keys)
    print(f"\nsealed card data replaced: {report.problem}")
    assert not report.ok and report.first_bad_seq == 4 and "sealed card" in report.problem


def test_archive_moves_a_bounded_number_of_rows_per_run(journal, keys):
    rows = days_of_rows(journal, days=3, per_day=1500)
    now = T0 + timedelta(days=3)
    accept(journal, rows, now)
    first = journal.archive(keep_days=1, today=DAY0 + timedelta(days=3), now=now, max_rows=1200)
    second = journal.archive(keep_days=1, today=DAY0 + timedelta(days=3), now=now)
    print(f"\n4,500 rows, keep 1 day, 1,200 a run: {first.to_dict()} then {second.to_dict()}")
    assert (first.archived, first.stopped_by) == (1200, "limit")
    assert second.archived == 3000 - 1200 and second.stopped_by is None and second.freed_pages > 0
    verified(journal, keys)


def test_a_full_verify_runs_in_the_background_and_reports_its_progress(journal, keys):
    for first in range(0, 10_500, 1500):  # the real append path, 1,500 rows a write session
        with journal.session(now=T0) as session:
            for i in range(first, first + 1500):
                session.append(sale(i), now=T0 + timedelta(seconds=i), business_date=DAY0)
    journal.housekeeping(T0 + timedelta(hours=3))
    job = journal.verify_in_background()
    report = job.wait(timeout=120)
    print(f"\nbackground verify of 10,500 rows: {report and report.seconds:.2f} s, last progress "
          f"{job.checked}/{job.total}, progress {job.progress}")
    assert report is not None and report.ok and report.rows_checked == 10_500
    assert (job.checked, job.total, job.progress) == (10_000, 10_500, 1.0)  # told at 5,000 and 10,000


def test_a_sale_is_found_by_the_end_of_its_reference_through_an_index(journal):
    rows = days_of_rows(journal, days=1, per_day=40)
    target = rows[17]
    assert [r.id for r in journal.txns.find(target.id[-8:])] == [target.id]
    assert [r.id for r in journal.txns.find(target.id[-10:])] == [target.id]
    # the start of an id is its creation time: every row made in the same millisecond shares it
    by_start = [r.id for r in journal.txns.find(target.id[:13])]
    assert target.id in by_start and all(i.startswith(target.id[:13]) for i in by_start)
    assert [r.id for r in journal.txns.find(target.id[:23])] == [target.id]
    plan = " ".join(str(r) for r in journal.db.db.execute(
        "EXPLAIN QUERY PLAN SELECT seq FROM txn WHERE substr(id, -8) = ?", ("x",)).fetchall())
    assert "txn_id_tail" in plan
