"""Receipts and day reports as text (screen, file) and the e-receipt QR payload.

Lines are at most RECEIPT_WIDTH terminal cells wide, counting Chinese characters as two cells.
The e-receipt QR carries the facts of the transaction plus the journal row hash and the terminal's
signature, so the customer's wallet app (or the backend) can check it came from this terminal:
`WPR1.` + base64url(JSON) with keys t terminal, m merchant, r id, s seq, k kind, a amount (minor
units), c currency, d decision, at created (UTC), p masked PAN, h row hash, g signature.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from terminal.core.money import Money, currency, format_money
from terminal.core.reports import DayReport, Totals
from terminal.i18n import display_width, reason, t
from terminal.journal import TxnRow, utc_text

RECEIPT_WIDTH = 40


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


def _lpad(text: str, width: int) -> str:
    return " " * max(0, width - display_width(text)) + text


def _centre(text: str, width: int = RECEIPT_WIDTH) -> str:
    gap = max(0, width - display_width(text))
    return " " * (gap // 2) + text


def _money(cfg: Any, minor: int, cur: str) -> str:
    return format_money(Money(minor, currency(cur)), decimal_sep=cfg.display.decimal_separator,
                        group_sep=cfg.display.group_separator)


def receipt_lines(row: TxnRow, cfg: Any, locale: str | None = None) -> list[str]:
    locale = locale or cfg.display.locale
    local_time = row.created_at.astimezone(cfg.terminal.zone).strftime("%Y-%m-%d %H:%M:%S")
    rule = "-" * RECEIPT_WIDTH
    lines = [
        _centre(cfg.terminal.merchant_name),
        _centre(cfg.terminal.merchant_city),
        rule,
        _centre(t(locale, f"receipt.title.{row.kind}")),
        t(locale, "receipt.terminal", terminal=row.terminal_id),
        t(locale, "receipt.merchant", merchant=cfg.terminal.merchant_id),
        t(locale, "receipt.time", time=local_time),
        t(locale, "receipt.amount", amount=_money(cfg, row.amount.minor, row.amount.currency.alpha)),
        t(locale, "receipt.method",
          method=t(locale, f"method.{row.method}") + (f" ({row.scheme})" if row.scheme else "")),
    ]
    if row.masked_pan:
        lines.append(t(locale, "receipt.card", pan=row.masked_pan))
    lines += [t(locale, "receipt.reference"), "  " + row.id]
    if row.reference:
        lines += [t(locale, "receipt.original"), "  " + row.reference]
    if row.approved:
        auth = t(locale, f"receipt.auth.{row.auth_mode}") if f"receipt.auth.{row.auth_mode}" in _AUTH_KEYS else ""
        lines.append(t(locale, "receipt.result", result=t(locale, "outcome.approved")) + (f" - {auth}" if auth else ""))
    else:
        why = "; ".join(reason(locale, r) for r in row.reasons[:2])
        lines.append(t(locale, "receipt.result", result=t(locale, "outcome.declined")))
        if why:
            lines.append(why)
    lines += [t(locale, "receipt.seq", seq=row.seq), rule, _centre(cfg.receipts.footer)]
    return lines


_AUTH_KEYS = {"receipt.auth.offline", "receipt.auth.online", "receipt.auth.offline_fallback"}


def e_receipt_payload(row: TxnRow, cfg: Any) -> str:
    """The signed e-receipt the backend serves for a row (the row must be signed: it is, shortly after
    it is written, and always before it is uploaded)."""
    if row.signature is None:
        raise ValueError(f"transaction {row.id} is not signed yet")
    body = {
        "t": row.terminal_id, "m": cfg.terminal.merchant_id, "r": row.id, "s": row.seq, "k": row.kind,
        "a": row.amount.minor, "c": row.amount.currency.alpha, "d": row.decision, "at": utc_text(row.created_at),
        "p": row.masked_pan, "h": row.row_hash, "g": row.signature,
    }
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return "WPR1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def e_receipt_qr_text(row: TxnRow) -> str:
    """The short e-receipt for the on-screen QR (small enough for a QR that fits an 80x24 screen):
    `WPR1:<terminal>:<id, 32 hex>:<amount minor>:<currency>:<first 16 hex of the row hash>`, upper
    case so the code uses the QR alphanumeric mode. The wallet app fetches the signed receipt
    (`e_receipt_payload`) from the backend by id and checks the hash prefix."""
    return (f"WPR1:{row.terminal_id}:{row.id.replace('-', '')}:{row.amount.minor}:"
            f"{row.amount.currency.alpha}:{row.row_hash[:16]}").upper()


def parse_e_receipt(payload: str) -> dict[str, Any]:
    if not payload.startswith("WPR1."):
        raise ValueError("not an e-receipt")
    data = payload[5:]
    return json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))


def report_lines(report: DayReport, cfg: Any, locale: str | None = None) -> list[str]:
    locale = locale or cfg.display.locale
    cur = report.currency
    label_width = RECEIPT_WIDTH - 5 - 13

    def line(label: str, totals: Totals | None = None, amount: int | None = None) -> str:
        count = "" if totals is None else str(totals.count)
        value = totals.amount if totals is not None else amount
        return f"{_pad(label, label_width)}{_lpad(count, 4)} {_lpad(_money(cfg, value or 0, cur), 13)}"

    title = t(locale, "report.z", number=report.z_number) if report.z_number is not None else t(locale, "report.x")
    lines = [_centre(cfg.terminal.merchant_name), _centre(title), "-" * RECEIPT_WIDTH]
    if report.first_seq is None:
        return [*lines, t(locale, "report.empty")]
    lines.append(t(locale, "report.range", first=report.first_seq, last=report.last_seq))
    lines.append(line(t(locale, "report.sales"), report.sales))
    if report.by_method:
        lines.append(t(locale, "report.by_method"))
        lines += [line("  " + t(locale, f"method.{m}"), v) for m, v in sorted(report.by_method.items())]
    if report.by_scheme:
        lines.append(t(locale, "report.by_scheme"))
        lines += [line(f"  {s}", v) for s, v in sorted(report.by_scheme.items())]
    lines += [
        line(t(locale, "report.offline_approved"), report.offline_approved),
        line(t(locale, "report.online_approved"), report.online_approved),
        line(t(locale, "report.refunds"), report.refunds),
        line(t(locale, "report.voids"), report.voids),
        line(t(locale, "report.declined"), report.declined),
        line(t(locale, "report.declined_after_offline"), report.declined_after_offline),
        line(t(locale, "report.pending_sync"), report.pending_sync),
        "-" * RECEIPT_WIDTH,
        line(t(locale, "report.net"), amount=report.net),
        line(t(locale, "report.expected_settlement"), amount=report.expected_settlement),
    ]
    return lines
