"""Receipts and day reports as text (screen, file) and the e-receipt QR payload.

Lines are at most RECEIPT_WIDTH terminal cells wide, counting Chinese characters as two cells.
The e-receipt QR carries the facts of the transaction plus the journal row hash and the terminal's
signature, so the customer's wallet app (or the backend) can check it came from this terminal:
`WPR1.` + base64url(JSON) with keys t terminal, m merchant, r id, s seq, k kind, a amount (minor
units), c currency, d decision, at created (UTC), p masked PAN, h row hash, g signature, n the short
reference and b the business day it belongs to.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from terminal.core.basket import format_tax_rate, items_of, taxes_of
from terminal.core.money import Money, currency, format_money
from terminal.core.reports import DayReport, Totals
from terminal.i18n import catalogue, display_width, reason, t
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


DEFAULT_FOOTER = "Thank you"  # `[receipts] footer` left as it is: the footer in the receipt's language


def scheme_name(locale: str, scheme: str | None) -> str:
    """A card or wallet scheme in words of `locale` ('unionpay' -> 'UnionPay' / '银联')."""
    if not scheme:
        return ""
    key = f"scheme.{scheme}"
    return t(locale, key) if key in catalogue("en") else scheme


def method_name(locale: str, method: str, scheme: str | None = None) -> str:
    key = f"method.{method}"
    words = t(locale, key) if key in catalogue("en") else method
    return words + (f" ({scheme_name(locale, scheme)})" if scheme else "")


def short_reference(row: TxnRow, *, with_date: bool = True) -> str:
    """The reference a person reads and types: '#0042' (the row's number in its business day),
    with the day beside it ('#0042 2026-11-23') where another day could have the same number."""
    ref = f"#{row.short_ref}" if row.short_ref else row.id[-8:]
    return f"{ref} {row.business_date.isoformat()}" if with_date else ref


def footer_text(cfg: Any, locale: str) -> str:
    footer = cfg.receipts.footer
    return t(locale, "receipt.footer") if footer == DEFAULT_FOOTER else footer


def _fit(text: str, width: int) -> str:
    while display_width(text) > width and text:
        text = text[:-1]
    return text


def _two_columns(left: str, right: str, width: int = RECEIPT_WIDTH) -> str:
    room = width - display_width(right) - 1
    return _pad(_fit(left, room), room) + " " + right


def item_lines(details: Mapping[str, Any], cfg: Any, locale: str, cur: str) -> list[str]:
    """The items of a sale and the tax included, as receipt lines."""
    lines: list[str] = []
    for item in items_of(details):
        name = str(item.get("name") or "") or t(locale, "receipt.item_unnamed")
        qty, unit = item["qty"], item.get("unit", item["amount"])
        if qty == 1:
            lines.append(_two_columns(name, _money(cfg, item["amount"], cur)))
        else:
            lines.append(_fit(name, RECEIPT_WIDTH))
            lines.append(_two_columns(f"  {qty} x {_money(cfg, unit, cur)}", _money(cfg, item["amount"], cur)))
    for tax in taxes_of(details):
        if tax.rate:
            lines.append(_two_columns(t(locale, "receipt.tax", rate=format_tax_rate(tax.rate)),
                                      _money(cfg, tax.tax, cur)))
    return lines


def receipt_lines(row: TxnRow, cfg: Any, locale: str | None = None, parts: Sequence[TxnRow] = ()) -> list[str]:
    """The receipt of one journal row in `locale`: items and tax, amount, how it was paid (cash with
    the change), the sale's other parts when it was paid in parts (`parts`, this row among them),
    the result, the short reference with its day, and the full transaction id."""
    locale = locale or cfg.display.locale
    local_time = row.created_at.astimezone(cfg.terminal.zone).strftime("%Y-%m-%d %H:%M:%S")
    cur = row.amount.currency.alpha
    rule = "-" * RECEIPT_WIDTH
    lines = [
        _centre(cfg.terminal.merchant_name),
        _centre(cfg.terminal.merchant_city),
        rule,
        _centre(t(locale, f"receipt.title.{row.kind}")),
        t(locale, "receipt.terminal", terminal=row.terminal_id),
        t(locale, "receipt.merchant", merchant=cfg.terminal.merchant_id),
        t(locale, "receipt.time", time=local_time),
        t(locale, "receipt.reference", reference=short_reference(row)),
    ]
    items = item_lines(row.details, cfg, locale, cur)
    if items:
        lines += [rule, *items, rule]
    lines += [
        t(locale, "receipt.amount", amount=_money(cfg, row.amount.minor, cur)),
        t(locale, "receipt.method", method=method_name(locale, row.method, row.scheme)),
    ]
    if row.masked_pan:
        lines.append(t(locale, "receipt.card", pan=row.masked_pan))
    tender = row.details.get("tender")
    if isinstance(tender, Mapping) and isinstance(tender.get("cash"), int):
        lines.append(t(locale, "receipt.cash", tendered=_money(cfg, tender["cash"], cur),
                       change=_money(cfg, int(tender.get("change") or 0), cur)))
    sale = row.details.get("sale")
    if isinstance(sale, Mapping) and isinstance(sale.get("total"), int):
        lines.append(t(locale, "receipt.part", part=sale.get("part", 1), total=_money(cfg, sale["total"], cur)))
        for other in parts:
            if other.id != row.id and other.approved:
                lines.append("  " + _two_columns(f"{short_reference(other, with_date=False)} "
                                                 f"{method_name(locale, other.method)}",
                                                 _money(cfg, other.amount.minor, cur), RECEIPT_WIDTH - 2))
    if row.reference:
        lines.append(t(locale, "receipt.original", reference=row.reference))
    if row.approved:
        auth = t(locale, f"receipt.auth.{row.auth_mode}") if f"receipt.auth.{row.auth_mode}" in _AUTH_KEYS else ""
        lines.append(t(locale, "receipt.result", result=t(locale, "outcome.approved")) + (f" - {auth}" if auth else ""))
    else:
        why = "; ".join(reason(locale, r) for r in row.reasons[:2])
        lines.append(t(locale, "receipt.result", result=t(locale, "outcome.declined")))
        if why:
            lines.append(why)
    note = row.details.get("note")
    if isinstance(note, str) and note:
        lines.append(t(locale, "receipt.note", note=note))
    lines += [t(locale, "receipt.seq", seq=row.seq), t(locale, "receipt.txn_id"), "  " + row.id, rule,
              _centre(footer_text(cfg, locale))]
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
        "p": row.masked_pan, "h": row.row_hash, "g": row.signature, "n": row.short_ref,
        "b": row.business_date.isoformat(),
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


@dataclass(frozen=True)
class ReportHeader:
    """Who and what a printed day report is about (a Z-report names the supervisor who closed it)."""

    terminal_id: str
    printed_at: datetime
    closed_by: str | None = None
    operator: str | None = None


def report_lines(report: DayReport, cfg: Any, locale: str | None = None, header: ReportHeader | None = None,
                 names: Mapping[str, str] | None = None) -> list[str]:
    """The X- or Z-report as text in `locale`: the header (terminal, business day, when, who), the
    totals by method and scheme, tax per rate, cash in the drawer, per cashier and per shift."""
    locale = locale or cfg.display.locale
    cur = report.currency
    names = names or {}
    label_width = RECEIPT_WIDTH - 5 - 13

    def line(label: str, totals: Totals | None = None, amount: int | None = None) -> str:
        count = "" if totals is None else str(totals.count)
        value = totals.amount if totals is not None else amount
        while display_width(label) > label_width:
            label = label[:-1]
        return f"{_pad(label, label_width)}{_lpad(count, 4)} {_lpad(_money(cfg, value or 0, cur), 13)}"

    title = t(locale, "report.z", number=report.z_number) if report.z_number is not None else t(locale, "report.x")
    rule = "-" * RECEIPT_WIDTH
    lines = [_centre(cfg.terminal.merchant_name), _centre(title), rule]
    zone = cfg.terminal.zone
    if header is not None:
        lines.append(t(locale, "report.terminal", terminal=header.terminal_id))
        lines.append(t(locale, "report.printed", time=header.printed_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")))
        if header.closed_by:
            lines.append(t(locale, "report.closed_by", supervisor=_who(header.closed_by, names)))
        if header.operator and header.operator != header.closed_by:
            lines.append(t(locale, "report.operator", operator=_who(header.operator, names)))
    if report.first_seq is None:
        return [*lines, t(locale, "report.empty")]
    first_day, last_day = report.first_business_date, report.last_business_date
    if first_day is not None:
        days = first_day.isoformat() if first_day == last_day or last_day is None else \
            f"{first_day.isoformat()} - {last_day.isoformat()}"
        lines.append(t(locale, "report.business_day", day=days))
    lines.append(t(locale, "report.range", first=report.first_seq, last=report.last_seq))
    lines.append(rule)
    lines.append(line(t(locale, "report.sales"), report.sales))
    if report.by_method:
        lines.append(t(locale, "report.by_method"))
        lines += [line("  " + method_name(locale, m), v) for m, v in sorted(report.by_method.items())]
    if report.by_scheme:
        lines.append(t(locale, "report.by_scheme"))
        lines += [line("  " + (scheme_name(locale, s) if s != "-" else t(locale, "report.no_scheme")), v)
                  for s, v in sorted(report.by_scheme.items())]
    lines += [
        line(t(locale, "report.offline_approved"), report.offline_approved),
        line(t(locale, "report.online_approved"), report.online_approved),
        line(t(locale, "report.refunds"), report.refunds),
        line(t(locale, "report.voids"), report.voids),
        line(t(locale, "report.declined"), report.declined),
        line(t(locale, "report.declined_after_offline"), report.declined_after_offline),
        line(t(locale, "report.pending_sync"), report.pending_sync),
    ]
    taxed = [(rate, totals) for rate, totals in sorted(report.tax.items()) if rate]
    if taxed:
        lines.append(t(locale, "report.tax"))
        for rate, totals in taxed:
            lines.append(line("  " + t(locale, "report.tax_rate", rate=format_tax_rate(rate),
                                       gross=_money(cfg, totals.gross, cur)), amount=totals.tax))
        lines.append(line(t(locale, "report.tax_total"), amount=report.tax_total))
    if "cash" in report.by_method or report.cash_in_drawer:
        lines.append(line(t(locale, "report.cash_in_drawer"), amount=report.cash_in_drawer))
    if report.by_cashier:
        lines.append(t(locale, "report.by_cashier"))
        for who, part in sorted(report.by_cashier.items()):
            label = _who(who, names) if who != "-" else t(locale, "report.no_cashier")
            lines.append(line("  " + label, part.sales, amount=None))
            lines.append(line("    " + t(locale, "report.part_net"), amount=part.net))
    if len(report.shifts) > 1 or report.shift_ends:
        lines.append(t(locale, "report.shifts"))
        for i, part in enumerate(report.shifts, 1):
            lines.append(line("  " + t(locale, "report.shift", number=i, first=part.first_seq or "-",
                                       last=part.last_seq or "-"), part.sales))
            lines.append(line("    " + t(locale, "report.part_net"), amount=part.net))
    lines += [
        rule,
        line(t(locale, "report.net"), amount=report.net),
        line(t(locale, "report.expected_settlement"), amount=report.expected_settlement),
    ]
    return lines


def _who(operator_id: str, names: Mapping[str, str]) -> str:
    name = names.get(operator_id)
    return f"{name} ({operator_id})" if name else operator_id
