"""Registering a terminal's merchant QR code with the backend, in tests.

The backend knows a merchant code only from the terminal that registered it (`POST /v1/payments`,
docs/openapi.yaml): status, cancel and the wallet app's payment answer 404 for any other code. The
checkout does not register the codes it shows itself yet, so tests that show a code register it
the way the terminal does, in a request signed with the terminal's own key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import requests

from terminal.backend import signing_session
from terminal.core.money import Money


def post_registration(svc: Any, reference: str, amount: Money, valid_until: datetime) -> requests.Response:
    """`POST /v1/payments` for `reference`, signed as `svc`'s terminal; the backend's answer."""
    session = signing_session(svc.keys, svc.config.terminal.id)
    try:
        return session.post(svc.config.backend.url.rstrip("/") + "/v1/payments", timeout=10, json={
            "reference": reference, "amount": amount.minor, "currency": amount.currency.alpha,
            "valid_until": valid_until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
    finally:
        session.close()


def register_merchant_code(svc: Any, reference: str, amount: Money, valid_until: datetime) -> dict[str, Any]:
    """Register `reference` for `svc`'s terminal; returns the backend's answer (the code)."""
    response = post_registration(svc, reference, amount, valid_until)
    assert response.status_code in (200, 201), response.text
    return response.json()


def register_shown_code(svc: Any, qr: Any) -> dict[str, Any]:
    """Register a code the checkout made (`Checkout.merchant_qr` / `codepay.merchant_qr`)."""
    return register_merchant_code(svc, qr.reference, qr.amount, qr.valid_until)
