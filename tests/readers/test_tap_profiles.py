"""Every virtual card profile tapped through the real stacks, from the reader to the journal row:
pyscard -> pcscd -> vpcd -> the virtual card, and nfcpy's udp driver -> the card process (ISO-DEP).
The outcomes are the ones the in-process tests expect (tests/cards/test_card_payments.py); here the
APDUs cross the real PC/SC daemon and the real nfcpy frame exchange."""

from __future__ import annotations

import pytest

from drivers.sim.profiles import PROFILES
from terminal.core.money import Money, currency
from tests.cards.test_card_payments import EXPECTED

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("profile", sorted(EXPECTED))
@pytest.mark.parametrize("transport", ["pcsc", "nfc"])
def test_profile_through_the_real_stack(request, service, transport: str, profile: str) -> None:
    rig = request.getfixturevalue(f"{transport}_rig")
    if profile == "denied":
        service.require_journal().deny_locally(service.keys.card_token(PROFILES["denied"].pan), "lost_or_stolen",
                                               now=service.clock())
    outcome, reason, apdus = EXPECTED[profile]
    rig.insert(profile)
    session = rig.reader.wait_for_card(10.0)
    assert session is not None, f"{transport}: the card was not seen"
    with session:
        result = service.pay_card(session, Money(1234, currency("CNY")))
    assert result.outcome == outcome, result.message
    assert reason in result.reasons
    rows = list(service.export_journal(None))
    if apdus is None:
        assert result.read is None and rows == []
        return
    assert result.read.apdu_count == apdus
    assert len(rows) == 1 and rows[0]["masked_pan"] == result.read.masked_pan
    assert rows[0]["card_token"] == service.keys.card_token(PROFILES[profile].pan)
    assert result.timings_ms["total"] > 0


def test_recorded_card_transcripts_are_servable_on_pcscd(pcsc_rig, service, shared_vectors) -> None:
    """The real-world transcripts of ../shared/vectors replayed as cards behind real pcscd + vpcd:
    the ones that are whole contactless transactions read through the kernel to a masked PAN."""
    from drivers.sim.replay import load_vector_cards

    cards = dict(load_vector_cards(shared_vectors))
    whole = [label for label in cards if "UnionPay" in label or "Lloyds" in label]
    assert whole, "expected the UnionPay and Lloyds Visa transcripts in the vectors"
    for label in whole:
        card = cards[label]
        pcsc_rig.server.insert(card)
        session = pcsc_rig.reader.wait_for_card(10.0)
        assert session is not None
        with session:
            result = service.pay_card(session, Money(500, currency("CNY")))
        assert result.read is not None, f"{label}: {result.message}"
        assert "*" in result.read.masked_pan
        pcsc_rig.server.remove()
        pcsc_rig.wait_empty()
