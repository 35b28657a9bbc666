"""Paying with scanned codes through the real service: rules, a real SQLite journal, the single-use
claim, and no card number in clear anywhere in the database."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from terminal import codepay
from terminal.core import qrpay
from terminal.core.money import Money
from terminal.core.rules import WalletTier
from terminal.errors import WalletposError
from tests.qr.conftest import CNY, cpm_text, make_code, vectors


def rows(svc):
    return list(svc.require_journal().txns.rows_since(None))


def test_signed_code_pays_once_offline_and_a_replay_is_declined_and_journaled(qr_service, issuer, clock):
    text = make_code(issuer, issued=clock.now - timedelta(seconds=5), wallet_id="W777", counter=9)
    first = qr_service.pay_code(text, Money(2500, CNY))
    assert first.outcome == "approved" and first.payment.auth_mode == "offline"
    row = first.payment.row
    assert row.method == "wallet_signed" and row.card_token == qr_service.keys.wallet_token("W777")
    assert len(row.card_token) == 32 and "W777" not in row.card_token
    assert row.details["wallet_tier"] == "real_name" and row.details["code_counter"] == 9
    assert qr_service.require_journal().issuer_keys.code_used("W777", 9) == row.id
    again = qr_service.pay_code(text, Money(2500, CNY))
    assert again.outcome == "declined" and again.reasons == ("code_already_used",)
    stored = rows(qr_service)
    assert [(r.decision, r.reasons) for r in stored] == [("approved", ("below_floor_limit",)),
                                                         ("declined", ("code_already_used",))]


def test_the_claim_in_the_journal_stops_a_replay_that_slips_past_the_early_check(qr_service, issuer, clock):
    text = make_code(issuer, issued=clock.now, wallet_id="W1", counter=3)
    payment = codepay.prepare_code_payment(qr_service.payments, text, Money(100, CNY))
    assert qr_service.pay(payment.request, payment.facts, claim=payment.claim).approved
    second = qr_service.pay(payment.request, payment.facts, claim=payment.claim)  # as if raced past code_used
    assert second.outcome == "declined" and second.reasons == ("code_already_used",)
    assert second.row is not None and not second.row.approved


def test_refused_signed_codes_are_declined_with_their_reason(qr_service, issuer, clock):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    expired = make_code(issuer, issued=clock.now - timedelta(minutes=5), counter=1)
    unknown = make_code(issuer, issued=clock.now, key_id="k9", counter=2)
    forged = make_code(Ed25519PrivateKey.from_private_bytes(b"\x09" * 32), issued=clock.now, counter=3)
    capped = make_code(issuer, issued=clock.now, counter=4, cap=Money(1000, CNY))
    got = [qr_service.pay_code(t, Money(2000, CNY)) for t in (expired, unknown, forged, capped)]
    assert [r.reasons for r in got] == [("code_expired",), ("unknown_issuer_key",), ("bad_signature",),
                                        ("code_cap_exceeded",)]
    assert all(r.outcome == "declined" for r in got)
    stored = rows(qr_service)
    assert [r.reasons[0] for r in stored] == ["code_expired", "unknown_issuer_key", "bad_signature",
                                              "code_cap_exceeded"]
    assert all(not r.approved and r.card_token is None for r in stored)  # unverified wallet ids are not payers


def test_key_delivered_by_the_backend_is_trusted(data_dir, clock, issuer):
    from terminal.bootstrap import bootstrap

    with bootstrap(config_path=None, data_dir=data_dir, clock=clock, env={}) as svc:  # no key in config
        text = make_code(issuer, issued=clock.now, key_id="rot-2", counter=1)
        assert svc.pay_code(text, Money(100, CNY)).reasons == ("unknown_issuer_key",)
        svc.require_journal().issuer_keys.replace({"rot-2": issuer.public_key().public_bytes_raw()}, 1,
                                                  now=clock.now)
        assert svc.pay_code(text, Money(100, CNY)).approved


def test_wallet_tier_limits_apply(qr_service, issuer, clock):
    text = make_code(issuer, issued=clock.now, tier=WalletTier.UNVERIFIED, counter=5)
    result = qr_service.pay_code(text, Money(60000, CNY))  # unverified tier: 500.00 per payment
    assert result.outcome == "declined" and "tier_payment_limit_exceeded" in result.reasons
    # a declined payment does not use the code
    assert qr_service.require_journal().issuer_keys.code_used("W100", 5) is None


def test_consumer_code_is_journaled_with_token_and_masked_pan_only(qr_service, data_dir):
    """A consumer-presented EMV code needs the issuer (its cryptogram): without a backend it is declined,
    and journaled with the card token and the masked PAN only."""
    pan = "6212345678901234"
    result = qr_service.pay_code(cpm_text(pan=pan), Money(1999, CNY))
    assert result.outcome == "declined" and result.masked_pan == "621234******1234"
    assert "online_only_method" in result.reasons
    row = result.payment.row
    assert row.method == "qr_cpm" and row.scheme == "unionpay" and row.card_token == qr_service.keys.card_token(pan)
    assert row.details["aid"] == "A000000333010102" and row.details["cryptogram"] == "1122334455667788"
    qr_service.close()
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert pan.encode() not in path.read_bytes(), path
    with sqlite3.connect(data_dir / "journal.sqlite3") as db:
        dump = "\n".join(db.iterdump())
    assert pan not in dump


def test_expired_consumer_code_card_is_declined(qr_service):
    result = qr_service.pay_code(cpm_text(expiry="200131"), Money(100, CNY))
    assert result.outcome == "declined" and "card_expired" in result.reasons


def test_numeric_code_needs_the_backend(qr_service):
    result = qr_service.pay_code("281234567890123456", Money(100, CNY))
    assert result.kind == "wallet_numeric" and result.outcome == "declined"
    assert "online_only_method" in result.reasons and "backend_unreachable" in result.reasons
    row = result.payment.row
    assert row.details["wallet_code_masked"] == "281234********3456"
    assert "281234567890123456" not in str(row.to_dict())


def test_merchant_codes_and_other_text_are_refused_and_not_journaled(qr_service):
    mpm = vectors("mpm_qr")[0][1]["data"] if vectors("mpm_qr") else qr_service.merchant_qr(Money(1, CNY)).payload
    for text, reason in ((mpm, "merchant_code"), ("https://example.com", "not_a_payment_code"),
                         ("hQVDUFYwMQ==", "no_application"), ("A" * 4096, "too_long")):
        result = qr_service.pay_code(text, Money(100, CNY))
        assert (result.outcome, result.reasons) == ("refused", (reason,))
    assert rows(qr_service) == []


def test_merchant_qr_carries_amount_and_a_reference_that_is_the_transaction_id(qr_service):
    txn_id = "01a23afc-f079-7001-852a-5c3055685b6e"
    payload, reference = qr_service.merchant_codes.payload(Money(1234, CNY), txn_id)
    code = qrpay.parse_mpm(payload)
    assert code.initiation == "dynamic" and code.amount() == Money(1234, CNY)
    assert code.reference == reference and len(reference) == 25
    assert codepay.txn_id_of_reference(reference) == txn_id
    assert code.get("26").sub("00") == "com.walletpos.pay" and code.get("26").sub("01") == "MID000000000001"
    assert (code.mcc, code.country, code.merchant_name) == ("5411", "CN", "Walletpos Demo Shop")
    assert code.additional_data["07"] == "WPOS0001"
    for txn_id in ("00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"):
        assert codepay.txn_id_of_reference(codepay.reference_of(txn_id)) == txn_id
    assert codepay.reference_of("ffffffff-ffff-ffff-ffff-ffffffffffff") == "F5LXX1ZZ5PNORYNQGLHZMSP33"


def test_a_merchant_qr_without_the_backend_is_not_shown_and_no_sale_is_journaled(qr_service):
    """The backend must register a merchant code (as this terminal's) before anyone may scan it: with no
    backend the code is refused with a sentence saying so, and no sale is journaled."""
    with pytest.raises(WalletposError, match="backend"):
        qr_service.merchant_qr(Money(1234, CNY))
    assert qr_service.require_journal().head().counts()["total"] == 0


def test_card_data_and_numeric_codes_are_sealed_to_the_backend_key_when_there_is_one(qr_service):
    """Once the backend offers a sealing key (enrolment), card data goes sealed: only
    the backend's X25519 private key opens it. A real key pair stands in for an enrolled backend."""
    import json

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from terminal.security import open_sealed

    backend = X25519PrivateKey.generate()
    qr_service.payments.sealing_key = lambda: backend.public_key().public_bytes_raw()
    pan = "6212345678901234"
    row = qr_service.pay_code(cpm_text(pan=pan), Money(500, CNY)).payment.row
    assert row.sealed_card and pan not in row.sealed_card
    opened = json.loads(open_sealed(backend.private_bytes_raw(), row.sealed_card))
    assert opened["pan"] == pan and opened["expiry"] == "281231"
    numeric = qr_service.pay_code("291234567890123456", Money(500, CNY)).payment.row
    assert json.loads(open_sealed(backend.private_bytes_raw(), numeric.sealed_card)) == {
        "wallet_code": "291234567890123456"}


def test_codes_are_declined_when_the_journal_cannot_record(tmp_path, clock, qr_config, issuer):
    from terminal.bootstrap import bootstrap

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the data directory should be")
    with bootstrap(config_path=qr_config, data_dir=blocked, clock=clock, env={}) as svc:
        assert svc.journal is None
        for text in (make_code(issuer, issued=clock.now), make_code(issuer, issued=clock.now - timedelta(hours=1)),
                     cpm_text()):
            result = svc.pay_code(text, Money(100, CNY))
            assert result.outcome == "declined" and "storage_failure" in result.reasons, result
