"""Registration requests for a merchant QR code, made by hand in tests (another terminal trying to
take a code, the same terminal registering again).

The backend knows a merchant code only from the terminal that registered it (`POST /v1/payments`,
docs/openapi.yaml): status, cancel and the wallet app's payment answer 404 for any other code. The
terminal registers each code it makes before showing it (`terminal.codepay.MerchantCodes.create`);
these requests are signed with a terminal's own key, as the terminal's are."""

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
