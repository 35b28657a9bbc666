"""What the backend answered to an upload, read row by row (`tally_answer`), and its signed
acknowledgement of the journal head kept or refused (`keep_head_ack`). The sync worker applies
the tally to the journal: the deny list first, then the rows' sync states."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from terminal.backend import BatchAnswer, Enrolment
from terminal.journal import BACKEND_ACK, Journal, TxnRow
from terminal.journal.record import head_ack_digest
from terminal.security import verify_signature
from terminal.sync.report import SyncReport

log = logging.getLogger("walletpos.sync")

SEQ_CONFLICT = "seq_conflict"  # the reason the backend gives for a row whose sequence number it holds otherwise
MAX_DECLINES_LISTED = 100  # in one report; the journal keeps every one (sync_state declined_after_offline)


@dataclass
class Tally:
    """One batch's answer, row by row: the sync states to record, the card tokens to deny here (a
    payment declined after its offline approval) and the sequence numbers the backend holds otherwise."""

    results: list[tuple[str, str, str | None]] = field(default_factory=list)
    denials: list[tuple[str, str]] = field(default_factory=list)
    conflicts: list[int] = field(default_factory=list)


def tally_answer(rows: list[TxnRow], answer: BatchAnswer, report: SyncReport) -> Tally:
    """Read the backend's answer to `rows` (counted into `report`); nothing is written here."""
    tally = Tally()
    for row, item in zip(rows, answer.results, strict=True):
        state, reason = item.status, item.reason
        if state == "duplicate":
            report.duplicate += 1
            if item.original_status == "declined_after_offline":
                state = "declined_after_offline"
        elif state == "accepted":
            report.accepted += 1
        if state == "declined_after_offline":
            report.declined_after_offline += 1
            reason = reason or "declined_by_backend"
            if row.card_token:
                tally.denials.append((row.card_token, f"declined_after_offline:{reason}"))
            if len(report.declined) < MAX_DECLINES_LISTED:
                report.declined.append({"id": row.id, "seq": row.seq, "amount": row.amount.minor,
                                        "amount_text": str(row.amount), "card_token": row.card_token,
                                        "masked_pan": row.masked_pan, "reason": reason})
            log.warning("backend declined offline-approved payment seq=%d %s (%s); card token denied here",
                        row.seq, row.amount, reason)
        elif state == "rejected":
            report.rejected += 1
            log.error("backend rejected journal row seq=%d id=%s: %s (kept in the journal; call support)",
                      row.seq, row.id, reason)
            if (reason or "").startswith(SEQ_CONFLICT):
                tally.conflicts.append(row.seq)
        tally.results.append((row.id, state, reason))
    return tally


def keep_head_ack(journal: Journal, enrolment: Enrolment | None, ack: dict[str, Any], now: datetime) -> None:
    """Keep the backend's signed acknowledgement of the journal head (the anchor a shell on the
    terminal cannot rewrite alone): when its signature is the backend's and the journal holds that
    very row. A signed acknowledgement of a row this journal does not hold puts the journal on hold."""
    key = enrolment.ack_public_key if enrolment is not None else None
    try:
        seq, digest = int(ack["txn_seq"]), str(ack["txn_hash"])
        signature = bytes.fromhex(str(ack["signature"]))
        body = head_ack_digest(str(ack["terminal_id"]), seq, digest, str(ack["terminal_key"]), str(ack["at"]))
    except (KeyError, TypeError, ValueError):
        log.warning("the backend's acknowledgement of the journal head is unreadable; ignored")
        return
    if key is None or not verify_signature(key, signature, body):
        log.warning("the backend's acknowledgement of the journal head is not signed by its key; ignored")
        return
    if ack["terminal_key"] != journal.meta("public_key"):
        journal.hold("the backend acknowledged rows of another terminal key: the key file was replaced", now=now)
        return
    ours = journal.txns.rows("WHERE seq = ?", (seq,))
    if ours and ours[0].row_hash != digest:
        journal.hold(f"the backend holds another row {seq} than this journal: the journal was rewritten or forked",
                     now=now)
        return
    if ours:
        journal.set_guard(BACKEND_ACK, dict(ack), now=now)


__all__ = ["MAX_DECLINES_LISTED", "SEQ_CONFLICT", "Tally", "keep_head_ack", "tally_answer"]
