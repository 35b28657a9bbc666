"""The technician's support bundle and diagnostics: what is in the zip, and what never is."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from drivers.sim.cards import make_card
from drivers.sim.profiles import PROFILES
from drivers.simreader import SimReader
from terminal.bootstrap import Devices, bootstrap
from terminal.core.money import Money
from terminal.support import removable_drives, write_bundle
from tests.conftest import WALLETPOS


def _tap(service, profile: str) -> None:
    reader = SimReader()
    reader.tap(make_card(profile))
    with reader.wait_for_card(1.0) as session:
        service.pay_card(session, Money(888, service.currency))


def with_reader(data_dir: Path, clock, reader: SimReader):
    """A terminal whose checkout watches `reader` (the configured camera is not attached)."""
    return bootstrap(data_dir=data_dir, clock=clock, env={}, devices=Devices(open_reader=lambda: reader))


def test_bundle_has_status_devices_transactions_and_no_secrets(data_dir: Path, clock, tmp_path: Path) -> None:
    reader = SimReader(name="bench reader")
    with with_reader(data_dir, clock, reader) as service:
        _bundle_has_status_devices_transactions_and_no_secrets(service, tmp_path)


def _bundle_has_status_devices_transactions_and_no_secrets(service, tmp_path: Path) -> None:
    for profile in ("visa", "mastercard"):
        _tap(service, profile)
    path = write_bundle(service, tmp_path / "bundle.zip")
    with zipfile.ZipFile(path) as bundle:
        names = set(bundle.namelist())
        assert {"status.json", "config.toml", "transactions.jsonl", "README.txt"} <= names
        assert not any(n.endswith((".key", ".sqlite3", ".sqlite3-wal")) or "key" in Path(n).name for n in names)
        status = json.loads(bundle.read("status.json"))
        assert status["devices"]["reader"]["configured"] == "sim:"
        assert status["devices"]["camera"]["state"] == "not attached"
        assert status["journal_verify"]["ok"] is True
        assert status["versions"]["walletpos"]
        rows = [json.loads(line) for line in bundle.read("transactions.jsonl").decode().splitlines()]
        assert [r["scheme"] for r in rows] == ["visa", "mastercard"]
        assert all("sealed_card" not in r for r in rows)
        blob = b"".join(bundle.read(n) for n in names)
    for profile in ("visa", "mastercard"):
        pan = PROFILES[profile].pan
        assert pan.encode() not in blob, f"card number ending {pan[-4:]} in the bundle"
    keys_dir_files = [p.read_bytes() for p in (service.data_dir / "keys").glob("*")] \
        if (service.data_dir / "keys").exists() else []
    for secret in keys_dir_files:
        assert secret not in blob


def test_diagnostics_name_the_reader_state(data_dir: Path, clock) -> None:
    reader = SimReader(name="counter reader")
    with with_reader(data_dir, clock, reader) as service:
        reader.unplug()
        import time

        deadline = time.monotonic() + 5
        while service.device_report()["reader"]["state"] != "absent" and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = service.diagnostics()
    reader_line = next(line for line in lines if line.startswith("reader"))
    assert "absent" in reader_line and "unplugged" in reader_line
    assert any(line.startswith("queue") for line in lines)


def test_support_bundle_command(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "b.zip"
    run = subprocess.run([*WALLETPOS, "support-bundle", "--out", str(out)], env=cli_env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(out)
    with zipfile.ZipFile(out) as bundle:
        assert "status.json" in bundle.namelist()


def test_bundle_keeps_signatures_readable_and_carries_doctor_and_failed_taps(data_dir: Path, clock,
                                                                             tmp_path: Path) -> None:
    """Card numbers are masked by the Luhn-checked function, so the journal's hashes and signatures stay
    as they are; the doctor's checks and the kept failed taps (already redacted) are in it; no key, no
    journal file, no sealed card data, no card number."""
    reader = SimReader(name="bench reader")
    with with_reader(data_dir, clock, reader) as service:
        _tap(service, "visa")
        _tap(service, "pulled")  # taken away too soon: kept as a failed tap (its track 2 had the card number)
        service.housekeeping()
        row = service.recent_transactions(1)[0]
        path = write_bundle(service, tmp_path / "bundle.zip")
        keys = [p.read_bytes() for p in service.data_dir.rglob("*.key")]
    with zipfile.ZipFile(path) as bundle:
        names = set(bundle.namelist())
        assert "doctor.json" in names and any(n.startswith("traces/tap-") for n in names)
        assert not any(n.endswith((".sqlite3", ".sqlite3-wal", ".key")) for n in names)
        doctor = json.loads(bundle.read("doctor.json"))
        assert {c["area"] for c in doctor["checks"]} == {"system", "backend", "clock", "journal", "queue", "limits"}
        assert all("ms" in c for c in doctor["checks"])
        transactions = bundle.read("transactions.jsonl").decode()
        assert row.signature and row.signature in transactions and row.row_hash in transactions
        trace = json.loads(next(bundle.read(n) for n in names if n.startswith("traces/")))[0]
        assert trace["expected"]["masked_pan"] == "476173******0093"
        blob = b"".join(bundle.read(n) for n in names)
    for profile in ("visa", "pulled"):
        assert PROFILES[profile].pan.encode() not in blob
    assert b"sealed_card" not in blob
    assert keys and not any(key in blob for key in keys)


def test_bundle_onto_a_removable_drive(data_dir: Path, clock, tmp_path: Path) -> None:
    drive = tmp_path / "usb"
    drive.mkdir()
    with bootstrap(data_dir=data_dir, clock=clock, env={}) as service:
        path = service.support_bundle_to_drive(drive)
    assert path.parent == drive and path.name.startswith("support-WPOS0001-")
    with zipfile.ZipFile(path) as bundle:
        assert "status.json" in bundle.namelist()
    from terminal.errors import StorageError

    with bootstrap(data_dir=data_dir, clock=clock, env={}) as service, \
            pytest.raises(StorageError, match="not a mounted"):
        service.support_bundle_to_drive(tmp_path / "not-there")


def test_removable_drives_are_found_from_the_mount_table(tmp_path: Path) -> None:
    block = tmp_path / "block"
    for disk, removable in (("sda", "0"), ("sdb", "1"), ("mmcblk0", "1")):
        (block / disk).mkdir(parents=True)
        (block / disk / "removable").write_text(removable + "\n")
    mounts = "\n".join([
        "/dev/sda1 / ext4 rw 0 0",
        "/dev/sdb1 /srv/stick vfat rw 0 0",  # removable by the kernel's word
        "/dev/sda2 /media/tech/BACKUP ext4 rw 0 0",  # under /media
        "/dev/mmcblk0p1 /mnt/sd\\040card vfat rw 0 0",
        "tmpfs /run tmpfs rw 0 0",
    ])
    assert removable_drives(mounts, block) == [Path("/srv/stick"), Path("/media/tech/BACKUP"), Path("/mnt/sd card")]


def test_support_bundle_command_onto_a_drive(cli_env: dict[str, str], tmp_path: Path) -> None:
    drive = tmp_path / "stick"
    drive.mkdir()
    run = subprocess.run([*WALLETPOS, "support-bundle", "--drive", str(drive)], env=cli_env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    written = Path(run.stdout.strip())
    assert written.parent == drive and zipfile.is_zipfile(written)
