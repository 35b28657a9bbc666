"""The sandbox backend's SQLite file: private to its owner (it holds the sealing key and the issuer
keys), and its transactions survive a COMMIT that fails. Real SQLite files; the failed COMMIT is a
real deferred foreign-key violation, set up in the file from another connection."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from sandbox import start_sandbox
from sandbox.store import Store


def mode(path) -> str:
    return oct(stat.S_IMODE(os.stat(path).st_mode))


def test_the_database_and_its_directory_are_private(tmp_path):
    data = tmp_path / "new" / "sandbox"
    with start_sandbox(db_path=data / "backend.sqlite3") as sandbox:  # its own process, as the demo starts it
        sandbox.admin.new_issuer_key("K1")  # a private key goes into the file
        files = {p.name: mode(p) for p in sorted(data.iterdir())}
        directory = mode(data)
    print(f"\nsandbox data directory {directory}, files {files}")
    assert directory == "0o700"
    assert files["backend.sqlite3"] == "0o600" and files["admin.token"] == "0o600"
    assert all(m == "0o600" for m in files.values()), files  # -wal and -shm too


def test_an_existing_database_readable_by_others_is_made_private(tmp_path):
    path = tmp_path / "backend.sqlite3"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    store = Store(path)
    store.keys.new_issuer_key("K1")
    store.close()
    print(f"\nan existing 0o644 database after the sandbox opened it: {mode(path)}")
    assert mode(path) == "0o600"


def test_a_failed_commit_is_rolled_back_and_the_next_transactions_work(tmp_path):
    path = tmp_path / "backend.sqlite3"
    store = Store(path)
    other = sqlite3.connect(path)
    other.executescript("""
        CREATE TABLE guard (id TEXT PRIMARY KEY);
        CREATE TABLE guarded (ref TEXT REFERENCES guard (id) DEFERRABLE INITIALLY DEFERRED);
        CREATE TRIGGER deny_needs_a_guard AFTER INSERT ON deny_changes
        BEGIN INSERT INTO guarded VALUES (NEW.card_token); END;
    """)  # every deny-list change now fails at COMMIT (no guard row), not before
    other.close()
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        store.risk.deny("tokA")
    later = []
    for _ in range(5):
        try:
            store.terminals.new_enrolment_token()
            later.append("ok")
        except sqlite3.Error as exc:
            later.append(str(exc))
    print(f"\n1 failed COMMIT, then 5 transactions: {later}")
    assert later == ["ok"] * 5
    assert store.risk.deny_list_version() == 0  # the failed change left nothing behind
    store.close()
