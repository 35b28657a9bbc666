"""The X/Z reports counted by SQL (`Transactions.batch_totals` + `report_of_totals`) are the reports
of the rows added one by one (`build_report`, the pure reference), on real SQLite journals: every
kind, decision, auth mode, method, scheme, cashier (none, empty, named), sync state, shift cut and
tax detail (well-formed, and the shapes `taxes_of` ignores: booleans, text, objects, a dict instead
of a list) that a journal can hold."""

from __future__ import annotations

import itertools
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terminal.core.money import Money, currency
from terminal.core.reports import build_report, report_of_totals
from terminal.journal import Journal, NewTransaction
from terminal.security import load_or_create_keys

CNY = currency("CNY")
START = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)

tax_line = st.one_of(
    st.fixed_dictionaries({"rate": st.sampled_from([0, 600, 900, 1300]), "gross": st.integers(0, 50_000),
                           "tax": st.integers(0, 5_000)}),
    st.fixed_dictionaries({"rate": st.just(1300), "gross": st.booleans(), "tax": st.integers(0, 9)}),  # ignored
    st.fixed_dictionaries({"rate": st.just("13"), "gross": st.integers(0, 9), "tax": st.integers(0, 9)}),  # ignored
    st.fixed_dictionaries({"rate": st.just(600), "gross": st.integers(0, 9)}),  # no tax: ignored
    st.just("13%"), st.just([1300, 100, 13]),  # not an object: ignored
)
details = st.one_of(
    st.just({}),
    st.fixed_dictionaries({"tax": st.lists(tax_line, max_size=3)}),
    st.fixed_dictionaries({"tax": st.just({"x": {"rate": 1300, "gross": 100, "tax": 13}})}),  # not a list: ignored
    st.fixed_dictionaries({"tax": st.just("1300")}),
    st.fixed_dictionaries({"note": st.just("tax"), "items": st.just([{"tax": 5}])}),
)
row = st.fixed_dictionaries({
    "kind": st.sampled_from(["sale", "fare", "refund", "void"]),
    "decision": st.sampled_from(["approved", "approved", "declined"]),
    "auth_mode": st.sampled_from(["offline", "online", "offline_fallback", "none"]),
    "method": st.sampled_from(["card", "cash", "qr_cpm", "wallet_code"]),
    "scheme": st.sampled_from([None, "", "visa", "unionpay"]),
    "operator": st.sampled_from([None, "", "c1", "c2", "sup1"]),
    "amount": st.integers(0, 100_000),
    "sync": st.sampled_from(["pending", "pending", "accepted", "duplicate", "declined_after_offline", "rejected"]),
    "details": details,
})


@pytest.fixture(scope="module")
def keys_dir() -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def journal_of(folder: Path, keys_dir: Path, rows: list[dict[str, Any]]) -> Journal:
    keys = load_or_create_keys(keys_dir)
    journal = Journal(folder / "journal.sqlite3", keys, "T0000001", now=START)
    results = []
    for i, r in enumerate(rows):
        moment = START + timedelta(minutes=37 * i)
        stored = journal.txns.append(NewTransaction(
            kind=r["kind"], amount=Money(r["amount"], CNY), method=r["method"], decision=r["decision"],
            reasons=("test",), auth_mode=r["auth_mode"], scheme=r["scheme"], operator=r["operator"],
            details=r["details"]), now=moment, business_date=moment.date())
        if r["sync"] != "pending":
            results.append((stored.id, r["sync"], None))
    if results:
        journal.sync.set_sync_results(results, now=START + timedelta(days=3))
    return journal


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, max_size=40), data=st.data())
def test_sql_totals_are_the_report_of_the_rows(keys_dir, rows, data):
    n = len(rows)
    after = data.draw(st.integers(0, n), label="last Z")
    until = data.draw(st.one_of(st.none(), st.integers(after, n + 2)), label="until")
    ends = sorted(data.draw(st.sets(st.integers(0, n + 2), max_size=4), label="shift ends"))
    with tempfile.TemporaryDirectory() as tmp:
        journal = journal_of(Path(tmp), keys_dir, rows)
        try:
            expected = build_report(journal.txns.rows_after(after, until=until), "CNY", 7, ends)
            counted = report_of_totals(journal.txns.batch_totals(after, until, ends), "CNY", 7, ends)
        finally:
            journal.close()
    assert counted.to_dict() == expected.to_dict()
    assert (counted.first_at, counted.last_at) == (expected.first_at, expected.last_at)


def test_a_day_of_every_combination(keys_dir, tmp_path):
    """Every combination of kind, decision, auth mode, method and sync state once, with tax on each,
    in three shifts of two cashiers: the SQL report equals the row-by-row one, line by line."""
    combos = list(itertools.product(["sale", "fare", "refund", "void"], ["approved", "declined"],
                                    ["offline", "online", "offline_fallback", "none"], ["card", "cash"],
                                    ["pending", "accepted", "declined_after_offline"]))
    rows = [{"kind": k, "decision": d, "auth_mode": a, "method": m, "scheme": "visa" if i % 3 else None,
             "operator": ("c1", "c2", None)[i % 3], "amount": 100 + i, "sync": s,
             "details": {"tax": [{"rate": 1300, "gross": 100 + i, "tax": 11}, {"rate": 600, "gross": 7, "tax": 1}]}}
            for i, (k, d, a, m, s) in enumerate(combos)]
    journal = journal_of(tmp_path, keys_dir, rows)
    ends = [len(rows) // 3, 2 * len(rows) // 3]
    try:
        expected = build_report(journal.txns.rows_after(0), "CNY", None, ends).to_dict()
        counted = report_of_totals(journal.txns.batch_totals(0, None, ends), "CNY", None, ends).to_dict()
    finally:
        journal.close()
    assert counted == expected
    assert len(counted["shifts"]) == 3 and set(counted["by_cashier"]) == {"c1", "c2", "-"}
    assert counted["tax"] and counted["sales"]["count"] > 0 and counted["declined"]["count"] == len(rows) // 2
