"""The sandbox backend's SQLite file is private to its owner: it holds the sealing key and the
issuer keys. Real SQLite files, and a sandbox in its own process as the demo starts it."""

from __future__ import annotations

import os
import sqlite3
import stat

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
