"""Every user-facing string, in English and Simplified Chinese.

`t(locale, key, **values)` looks a message up; a key missing in a locale falls back to English, and a
test checks that both locales have the same keys and the same {placeholders}. Reason codes from
the rules, the refund checks and the card/code flows are messages too (`reason(locale, code)`).
"""

from __future__ import annotations

from collections.abc import Mapping

Locale = str  # "en" | "zh-CN"
LOCALES = ("en", "zh-CN")

EN: dict[str, str] = {
    # -- outcomes -----------------------------------------------------------------------------
    "outcome.approved": "APPROVED",
    "outcome.declined": "DECLINED",
    "outcome.need_cvm": "ENTER PIN",
    "outcome.try_another_card": "TRY ANOTHER CARD",
    "outcome.tap_again": "TAP AGAIN",
    "outcome.decided_offline": "decided offline",
    "outcome.decided_online": "approved by the backend",
    "outcome.decided_fallback": "backend did not answer: decided offline",
    # -- rule reasons -----------------------------------------------------------------------------
    "reason.below_floor_limit": "within the floor limit",
    "reason.offline_fallback": "backend not reachable; within the offline limits",
    "reason.invalid_amount": "the amount must be more than zero",
    "reason.currency_not_accepted": "this terminal does not accept that currency",
    "reason.deny_listed": "this card or wallet is blocked",
    "reason.card_expired": "the card has expired",
    "reason.contactless_limit_exceeded": "too much for contactless; use another way to pay",
    "reason.tier_payment_limit_exceeded": "more than this wallet may pay at once",
    "reason.tier_daily_limit_exceeded": "this wallet has reached its daily limit",
    "reason.cvm_required": "the customer must enter a PIN or verify on their phone",
    "reason.above_floor_limit": "above the floor limit",
    "reason.online_only_method": "this way of paying needs the backend",
    "reason.offline_payment_cap_exceeded": "too large to approve offline",
    "reason.card_daily_amount_exceeded": "this card's offline amount for today is used up",
    "reason.card_daily_count_exceeded": "this card's offline payments for today are used up",
    "reason.exposure_cap_exceeded": "too many offline payments waiting to be sent",
    "reason.sync_too_old": "the terminal has not synced for too long",
    "reason.backend_unreachable": "the backend cannot be reached",
    "reason.storage_failure": "the terminal cannot record payments (storage)",
    "reason.declined_by_backend": "declined by the card issuer",
    "reason.unknown": "declined ({code})",
    # -- refunds and voids ------------------------------------------------------------------------
    "problem.not_a_sale": "only sales can be refunded or voided",
    "problem.original_not_approved": "the original payment was not approved",
    "problem.original_voided": "the original payment was voided",
    "problem.refund_window_passed": "the sale is older than the refund window",
    "problem.refund_exceeds_original": "more than what is left of the original payment",
    "problem.supervisor_pin_required": "a supervisor PIN is required",
    "problem.invalid_amount": "the amount must be more than zero",
    "problem.currency_mismatch": "the refund must be in the currency of the sale",
    "problem.not_last_sale": "only the last sale can be voided; refund older sales",
    "problem.already_refunded": "the sale already has refunds; refund the rest instead",
    "problem.other_business_day": "a void is only possible on the day of the sale; refund instead",
    "problem.not_found": "no transaction with that reference",
    "problem.supervisor_wrong_pin": "wrong supervisor PIN",
    "problem.supervisor_locked": "the supervisor is locked after too many wrong PINs",
    "problem.supervisor_unknown_operator": "no operator with that id",
    "problem.supervisor_not_a_supervisor": "that operator is not a supervisor",
    "problem.supervisor_inactive": "that supervisor is no longer active",
    # -- receipts --------------------------------------------------------------------------------
    "receipt.title.sale": "SALE",
    "receipt.title.refund": "REFUND",
    "receipt.title.void": "VOID",
    "receipt.title.fare": "FARE",
    "receipt.terminal": "Terminal {terminal}  Merchant {merchant}",
    "receipt.time": "Time {time}",
    "receipt.amount": "Amount {amount}",
    "receipt.method": "Paid by {method}",
    "receipt.card": "Card {pan}",
    "receipt.reference": "Ref {reference}",
    "receipt.original": "Original {reference}",
    "receipt.result": "Result {result}",
    "receipt.auth.offline": "Approved offline",
    "receipt.auth.online": "Approved online",
    "receipt.auth.offline_fallback": "Approved offline (backend unreachable)",
    "receipt.seq": "Journal #{seq}",
    "method.card": "contactless card",
    "method.qr_cpm": "card QR code",
    "method.wallet_signed": "wallet code",
    "method.wallet_numeric": "wallet code",
    "method.merchant_qr": "merchant QR",
    # -- day report ------------------------------------------------------------------------------
    "report.z": "Z-REPORT {number}",
    "report.x": "X-REPORT (interim, not closed)",
    "report.range": "Journal #{first} to #{last}",
    "report.empty": "No transactions since the last close",
    "report.sales": "Sales",
    "report.by_method": "By method",
    "report.by_scheme": "By scheme",
    "report.offline_approved": "Approved offline",
    "report.online_approved": "Approved online",
    "report.declined": "Declined attempts",
    "report.declined_after_offline": "Declined after offline",
    "report.pending_sync": "Waiting to sync",
    "report.refunds": "Refunds",
    "report.voids": "Voids",
    "report.net": "Net",
    "report.expected_settlement": "Expected settlement",
}

ZH: dict[str, str] = {
    "outcome.approved": "交易成功",
    "outcome.declined": "交易拒绝",
    "outcome.need_cvm": "请输入密码",
    "outcome.try_another_card": "请换一张卡",
    "outcome.tap_again": "请重新挥卡",
    "outcome.decided_offline": "脱机授权",
    "outcome.decided_online": "后台已授权",
    "outcome.decided_fallback": "后台未响应：脱机决定",
    "reason.below_floor_limit": "在最低限额以内",
    "reason.offline_fallback": "后台无法连接；在脱机限额以内",
    "reason.invalid_amount": "金额必须大于零",
    "reason.currency_not_accepted": "本终端不受理该币种",
    "reason.deny_listed": "该卡或钱包已被冻结",
    "reason.card_expired": "卡片已过期",
    "reason.contactless_limit_exceeded": "超过非接触限额，请换其他方式支付",
    "reason.tier_payment_limit_exceeded": "超过该钱包单笔限额",
    "reason.tier_daily_limit_exceeded": "该钱包已达当日限额",
    "reason.cvm_required": "需要顾客输入密码或在手机上验证",
    "reason.above_floor_limit": "超过最低限额",
    "reason.online_only_method": "该支付方式需要联机",
    "reason.offline_payment_cap_exceeded": "金额过大，无法脱机授权",
    "reason.card_daily_amount_exceeded": "该卡今日脱机金额已用完",
    "reason.card_daily_count_exceeded": "该卡今日脱机笔数已用完",
    "reason.exposure_cap_exceeded": "待上送的脱机交易过多",
    "reason.sync_too_old": "终端过久未与后台同步",
    "reason.backend_unreachable": "无法连接后台",
    "reason.storage_failure": "终端无法记录交易（存储故障）",
    "reason.declined_by_backend": "发卡方拒绝",
    "reason.unknown": "交易拒绝（{code}）",
    "problem.not_a_sale": "只有消费交易可以退货或撤销",
    "problem.original_not_approved": "原交易未成功",
    "problem.original_voided": "原交易已撤销",
    "problem.refund_window_passed": "原交易已超过退货期限",
    "problem.refund_exceeds_original": "超过原交易剩余可退金额",
    "problem.supervisor_pin_required": "需要主管密码",
    "problem.invalid_amount": "金额必须大于零",
    "problem.currency_mismatch": "退货币种必须与原交易一致",
    "problem.not_last_sale": "只能撤销最后一笔消费；更早的交易请退货",
    "problem.already_refunded": "该交易已有退货，请对剩余金额退货",
    "problem.other_business_day": "只能当日撤销；请改为退货",
    "problem.not_found": "找不到该参考号的交易",
    "problem.supervisor_wrong_pin": "主管密码错误",
    "problem.supervisor_locked": "主管密码错误次数过多，已锁定",
    "problem.supervisor_unknown_operator": "没有该操作员",
    "problem.supervisor_not_a_supervisor": "该操作员不是主管",
    "problem.supervisor_inactive": "该主管已停用",
    "receipt.title.sale": "消费",
    "receipt.title.refund": "退货",
    "receipt.title.void": "撤销",
    "receipt.title.fare": "车费",
    "receipt.terminal": "终端 {terminal}  商户 {merchant}",
    "receipt.time": "时间 {time}",
    "receipt.amount": "金额 {amount}",
    "receipt.method": "支付方式 {method}",
    "receipt.card": "卡号 {pan}",
    "receipt.reference": "参考号 {reference}",
    "receipt.original": "原交易 {reference}",
    "receipt.result": "结果 {result}",
    "receipt.auth.offline": "脱机授权",
    "receipt.auth.online": "联机授权",
    "receipt.auth.offline_fallback": "脱机授权（后台无法连接）",
    "receipt.seq": "流水号 #{seq}",
    "method.card": "非接触卡",
    "method.qr_cpm": "卡码",
    "method.wallet_signed": "钱包付款码",
    "method.wallet_numeric": "钱包付款码",
    "method.merchant_qr": "商户收款码",
    "report.z": "结算报表 Z{number}",
    "report.x": "中间报表（未结算）",
    "report.range": "流水 #{first} 至 #{last}",
    "report.empty": "上次结算后没有交易",
    "report.sales": "消费",
    "report.by_method": "按支付方式",
    "report.by_scheme": "按卡组织",
    "report.offline_approved": "脱机授权",
    "report.online_approved": "联机授权",
    "report.declined": "拒绝笔数",
    "report.declined_after_offline": "脱机后被拒",
    "report.pending_sync": "待上送",
    "report.refunds": "退货",
    "report.voids": "撤销",
    "report.net": "净额",
    "report.expected_settlement": "预计结算金额",
}

CATALOGUES: Mapping[str, Mapping[str, str]] = {"en": EN, "zh-CN": ZH}


def t(locale: Locale, key: str, **values: object) -> str:
    """The message `key` in `locale` (English when the locale lacks it), with {values} filled in."""
    text = CATALOGUES.get(locale, EN).get(key) or EN.get(key)
    if text is None:
        raise KeyError(f"no message {key!r}")
    return text.format(**values) if values else text


def reason(locale: Locale, code: str) -> str:
    """A rule, refund or flow reason code in words."""
    for prefix in ("reason.", "problem."):
        if prefix + code in EN:
            return t(locale, prefix + code)
    return t(locale, "reason.unknown", code=code)


def display_width(text: str) -> int:
    """Terminal cells `text` takes: East Asian wide and full-width characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)
