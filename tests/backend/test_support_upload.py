"""Support bundles to where support is: uploaded over the signed API (`POST /v1/support-bundles`) and
answered with a ticket id to read out; the backend can ask for one in its heartbeat answer, and the
terminal's sync worker hands that request to the service, which sends a bundle once."""

from __future__ import annotations

import io
import re
import subprocess
import time
import zipfile

import pytest

from terminal.backend import BackendRefused
from tests.backend.conftest import TERMINAL, pay
from tests.conftest import WALLETPOS

TICKET = re.compile(r"SB-[0-9A-HJ-NP-Z]{6}")


def test_upload_answers_with_a_ticket_and_support_gets_the_zip(sandbox, enrolled):
    pay(enrolled, 1234)
    ticket = enrolled.upload_support_bundle()
    assert TICKET.fullmatch(ticket.ticket) and ticket.size > 0
    listed = sandbox.admin.support_bundles(TERMINAL)
    assert [(b["ticket"], b["reason"], b["size"], b["sha256"]) for b in listed] == [
        (ticket.ticket, "technician", ticket.size, ticket.sha256)]
    data = sandbox.admin.support_bundle(ticket.ticket)
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        names = set(bundle.namelist())
        assert {"status.json", "doctor.json", "transactions.jsonl", "config.toml"} <= names
        assert not any(n.endswith((".sqlite3", ".key")) for n in names)
    audit = enrolled.require_journal().audit.rows(10)
    assert any(r["event"] == "support_bundle_sent" and ticket.ticket in str(r["details"]) for r in audit)


def test_the_backend_asks_for_a_bundle_at_the_next_heartbeat(sandbox, enrolled):
    assert enrolled.sync_once().ok
    assert sandbox.admin.support_bundles(TERMINAL) == []  # nobody asked
    sandbox.admin.request_support_bundle(TERMINAL, "reader trouble at till 3")
    assert enrolled.sync_once().ok  # the heartbeat answer carries the request; the bundle goes in the background
    deadline = time.monotonic() + 20
    while not sandbox.admin.support_bundles(TERMINAL) and time.monotonic() < deadline:
        time.sleep(0.05)
    bundles = sandbox.admin.support_bundles(TERMINAL)
    assert [b["reason"] for b in bundles] == ["backend_request"]
    status = enrolled.sync_status()
    beat = enrolled.backend.heartbeat(queue_depth=0, oldest_pending_at=None, last_sync_ok_at=status.last_success_at,
                                      deny_list_version=status.deny_list_version,
                                      config_version=status.limits_version,
                                      issuer_keys_version=status.issuer_keys_version)
    assert beat.support_bundle_requested is False  # the bundle's arrival cleared the request
    assert enrolled.sync_once().ok
    time.sleep(0.2)
    assert len(sandbox.admin.support_bundles(TERMINAL)) == 1  # asked once, sent once


def test_a_bundle_too_large_for_the_backend_is_refused_before_sending(sandbox, enrolled):
    with pytest.raises(BackendRefused, match="write it to a drive instead"):
        enrolled.backend.upload_support_bundle(b"PK\x03\x04" + bytes(9 * 1024 * 1024), file_name="big.zip",
                                               reason="technician")
    assert sandbox.admin.support_bundles(TERMINAL) == []


def test_support_bundle_upload_command(sandbox, enrolled, tmp_path, cli_env):
    config = tmp_path / "terminal.toml"
    config.write_text(f'[backend]\nurl = "{sandbox.url}"\n')
    env = {**cli_env, "WALLETPOS_DATA_DIR": str(enrolled.data_dir), "WALLETPOS_CONFIG": str(config)}
    enrolled.close()
    run = subprocess.run([*WALLETPOS, "support-bundle", "--upload"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    ticket = TICKET.search(run.stdout)
    assert ticket and [b["ticket"] for b in sandbox.admin.support_bundles(TERMINAL)] == [ticket.group(0)]
    config.write_text('[backend]\nurl = "http://127.0.0.1:1"\n')  # another backend: not enrolled there
    refused = subprocess.run([*WALLETPOS, "support-bundle", "--upload"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 11 and "enrol" in refused.stderr
