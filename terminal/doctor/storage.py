"""The journal and the disk under it: integrity (the whole file checked read-only, against the last
signed checkpoint and the anchor file; a hold that stops offline approvals), the file and its
write-ahead log, and the free space left for them."""

from __future__ import annotations

import shutil
from pathlib import Path

from terminal.doctor.checks import Check, advice, timed
from terminal.doctor.context import DoctorContext
from terminal.errors import WalletposError

AREA = "journal"
MB = 1024 * 1024
DISK_FAIL = 50 * MB
DISK_WARN = 500 * MB
WAL_WARN = 64 * MB

def _integrity(ctx: DoctorContext) -> Check:
    if ctx.storage_problem is not None:
        return Check(AREA, "integrity", "fail", "journal not open", ctx.storage_problem,
                     **advice("journal_not_open", data_dir=str(ctx.data_dir)))
    try:
        report = ctx.verify_journal()
        hold = ctx.integrity_problem()
        checkpoint = ctx.last_checkpoint()
    except WalletposError as exc:
        return Check(AREA, "integrity", "fail", "cannot be checked", exc.message, **advice("journal_damaged"))
    since = ""
    measured: dict[str, object] = {"rows_checked": report.rows_checked, "seconds": round(report.seconds, 3),
                                   "audit_rows_checked": report.audit_rows_checked}
    if checkpoint:
        measured.update(checkpoint_seq=checkpoint.get("txn_seq"), checkpoint_at=checkpoint.get("at"))
        since = f"; last signed checkpoint at row {checkpoint.get('txn_seq')} ({checkpoint.get('at')})"
    if not report.ok:
        measured.update(first_bad_seq=report.first_bad_seq, table=report.table, problems=list(report.problems[:5]))
        return Check(AREA, "integrity", "fail", f"damaged: {report.problem}",
                     f"{len(report.problems)} problem(s) found in {report.seconds * 1000:.0f} ms{since}",
                     measured=measured, **advice("journal_damaged"))
    if hold:
        return Check(AREA, "integrity", "fail", "on hold", f"offline approvals are off: {hold}",
                     measured={**measured, "hold": hold}, **advice("journal_hold"))
    rows = report.rows_checked
    return Check(AREA, "integrity", "pass", f"{rows} row{'' if rows == 1 else 's'} verified",
                 f"hash chains, signed head, deny list and checkpoints intact, in {report.seconds * 1000:.0f} ms"
                 + since,
                 measured=measured)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _files(ctx: DoctorContext) -> Check:
    path = ctx.journal_path
    size, wal = _size(path), _size(path.with_name(path.name + "-wal"))
    measured = {"journal_bytes": size, "wal_bytes": wal, "path": str(path)}
    figure = f"journal {size / MB:.1f} MB, WAL {wal / MB:.1f} MB"
    if wal >= WAL_WARN:
        return Check(AREA, "files", "warn", figure, "the write-ahead log keeps growing: something holds a read open",
                     measured=measured, **advice("wal_growing"))
    return Check(AREA, "files", "pass", figure, str(path), measured=measured)


def _disk(ctx: DoctorContext) -> Check:
    directory = ctx.data_dir
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    try:
        usage = shutil.disk_usage(directory)
    except OSError as exc:
        return Check(AREA, "disk", "fail", "unknown", f"{ctx.data_dir}: {exc.strerror or exc}",
                     **advice("disk_mount"))
    free = usage.free
    measured = {"free_bytes": free, "total_bytes": usage.total}
    figure = f"{free / MB:,.0f} MB free of {usage.total / MB:,.0f} MB"
    step = advice("free_disk", data_dir=str(ctx.data_dir))
    if free < DISK_FAIL:
        return Check(AREA, "disk", "fail", figure, "payments are declined when the journal cannot record",
                     measured=measured, **step)
    if free < DISK_WARN:
        return Check(AREA, "disk", "warn", figure, "the disk is filling up", measured=measured, **step)
    return Check(AREA, "disk", "pass", figure, str(ctx.data_dir), measured=measured)


def check_journal(ctx: DoctorContext) -> list[Check]:
    return [timed(lambda: _integrity(ctx)), timed(lambda: _files(ctx)), timed(lambda: _disk(ctx))]


__all__ = ["check_journal"]
