"""Payment code formats (pure): every public vector, the refusal reasons, and fuzzing (only
QrPayloadError may come out of a parser, whatever the input)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.core import qrpay
from terminal.core.money import Money
from terminal.core.qrpay import CodeKind
from terminal.errors import QrPayloadError
from tests.qr.conftest import CNY, cpm_text, vectors
from tests.vectors import needs_vectors, vector_params

MPM = vectors("mpm_qr")
CPM = vectors("cpm_qr")
BY_INDEX = {i: item for i, item in MPM + CPM}

# Items the source marks invalid, and the reason the terminal gives.
INVALID_REASONS = {
    40: "duplicate_tag", 41: "invalid_tag", 47: "missing_crc", 48: "truncated", 49: "truncated",
    50: "crc_mismatch", 51: "truncated", 53: "crc_mismatch", 54: "truncated", 55: "invalid_length",
    84: "crc_mismatch", 85: "missing_crc", 86: "truncated", 87: "truncated",
}
# Decided: refused although their source expects them to parse (see test docstrings).
REFUSED_ON_PURPOSE = {39: "missing_crc", 88: "crc_mismatch", 89: "crc_mismatch", 91: "crc_mismatch"}
VALID_MPM = [(i, it) for i, it in MPM if it["expected"].get("valid") is not False and i not in REFUSED_ON_PURPOSE]


def refused(reason: str, fn, *args, **kwargs) -> QrPayloadError:
    with pytest.raises(QrPayloadError) as info:
        fn(*args, **kwargs)
    assert info.value.reason == reason, info.value.message
    return info.value


def test_crc_is_ccitt_false():
    assert qrpay.crc16_ccitt_false(b"123456789") == 0x29B1  # the catalogue check value
    assert qrpay.mpm_crc("") == "FFFF"


@needs_vectors
@pytest.mark.parametrize("index,item", vector_params([pytest.param(i, it, id=str(i)) for i, it in VALID_MPM], 2))
def test_every_valid_merchant_vector_round_trips(index, item):
    code = qrpay.parse_mpm(item["data"])
    assert code.to_text() == item["data"]
    assert qrpay.classify(item["data"]).kind is CodeKind.MPM


@needs_vectors
@pytest.mark.parametrize("index,reason", sorted(INVALID_REASONS.items()))
def test_every_invalid_merchant_vector_is_refused_with_its_reason(index, reason):
    item = BY_INDEX[index]
    assert item["expected"]["valid"] is False
    refused(reason, qrpay.parse_mpm, item["data"])


@needs_vectors
def test_all_invalid_items_are_covered():
    invalid = {i for i, it in MPM if it["expected"].get("valid") is False}
    assert invalid == set(INVALID_REASONS)
    assert len(VALID_MPM) == 36  # 54 items: 14 invalid, 4 refused on purpose, 36 read and round-tripped


@needs_vectors
def test_emvco_specification_sample_fields():
    item = BY_INDEX[52]
    exp = item["expected"]
    code = qrpay.parse_mpm(item["data"])
    assert (code.payload_format, code.value("01"), code.mcc, code.country) == ("01", "12", "4111", "CN")
    assert (code.merchant_name, code.merchant_city, code.amount_text, code.currency_numeric) == (
        exp["merchant_name"], exp["merchant_city"], exp["amount"], exp["currency"])
    assert dict(code.get("29").template) == exp["mai_29"]
    assert dict(code.get("31").template) == exp["mai_31"]
    assert code.alternate_language == exp["language_template_64"]
    assert code.additional_data == exp["additional_62"]
    assert code.value("91") == exp["tag_91"] and code.value("55") == "01"
    assert len(code.fields) == exp["object_count"]
    assert code.amount() == Money(2372, CNY)


@needs_vectors
def test_lengths_in_utf8_bytes_are_read_as_a_fallback_and_kept():
    item = BY_INDEX[82]  # VietQR: 62/08 "Thanh toán hóa đơn" declared as 22 (bytes), 18 characters
    code = qrpay.parse_mpm(item["data"])
    assert code.length_unit == "utf8_bytes"
    assert code.additional_data["08"] == item["expected"]["message"]
    assert code.to_text() == item["data"]
    chinese = qrpay.parse_mpm(BY_INDEX[38]["data"])  # character lengths with Chinese text
    assert chinese.length_unit == "chars" and chinese.alternate_language["01"] == "北京"


@needs_vectors
def test_duitnow_payload_format_02_and_other_brands():
    duitnow = qrpay.parse_mpm(BY_INDEX[75]["data"])
    assert duitnow.payload_format == "02" and duitnow.amount_text == "1.00"
    assert duitnow.reference == BY_INDEX[75]["expected"]["reference_label"]
    hk = qrpay.parse_mpm(BY_INDEX[72]["data"])
    assert hk.reference == "INV/TEST/0001" and hk.get("26").sub("00") == "hk.com.hkicl"
    gintell = qrpay.parse_mpm(BY_INDEX[76]["data"])
    assert gintell.get("82").template is None and gintell.value("82") == BY_INDEX[76]["expected"]["tag_82"]


@needs_vectors
def test_codes_with_a_wrong_crc_are_refused_even_when_their_source_expects_them_to_parse():
    """Decision: a bad CRC is never accepted. The CRC is the only check a camera read has; the two
    QRIS samples (anonymised without recomputing the CRC) and the Argentine README example carry
    CRCs that do not verify. Their fields still read for diagnosis with check_crc=False."""
    for index in (88, 89, 91):
        refused("crc_mismatch", qrpay.parse_mpm, BY_INDEX[index]["data"])
    qris = qrpay.parse_mpm(BY_INDEX[88]["data"], check_crc=False)
    assert qris.merchant_name == "TEST MERCHANT" and qris.value("51")
    argentina = qrpay.parse_mpm(BY_INDEX[91]["data"], check_crc=False)
    assert argentina.crc == "4edf" and argentina.country == "AR"


@needs_vectors
def test_lower_case_crc_is_accepted_when_it_verifies():
    text = BY_INDEX[52]["data"]  # CRC A13A
    lower = text[:-4] + text[-4:].lower()
    assert lower != text and qrpay.parse_mpm(lower).to_text() == lower


@needs_vectors
def test_code_without_crc_is_refused_and_building_it_gives_the_original():
    """Decision: the spec makes ID 63 mandatory; a code without it may be cut short. Building the
    same objects adds the CRC and gives the source's complete payload (CRC 4220)."""
    refused("missing_crc", qrpay.parse_mpm, BY_INDEX[39]["data"])
    fields = qrpay.parse_mpm(BY_INDEX[39]["data"] + "63040000", check_crc=False).fields[:-1]
    assert qrpay.build_mpm([(f.tag, f.value) for f in fields]) == BY_INDEX[38]["data"]


@needs_vectors
def test_long_city_is_read_but_a_dynamic_code_is_built_only_from_valid_fields():
    code = qrpay.parse_mpm(BY_INDEX[44]["data"])  # PIX city of 16 characters (spec: 15)
    assert code.merchant_city == "Sao Joao del Rei" and code.to_text() == BY_INDEX[44]["data"]
    text = qrpay.dynamic_mpm(merchant_account=("26", [("00", "com.walletpos.pay"), ("01", "M1")]), mcc="5411",
                             amount=Money(1234, CNY), country="CN", merchant_name="Shop", merchant_city="Shanghai",
                             reference="REF123")
    code = qrpay.parse_mpm(text)
    assert code.initiation == "dynamic" and code.amount() == Money(1234, CNY) and code.reference == "REF123"
    refused("invalid_field", qrpay.dynamic_mpm, merchant_account=("26", [("00", "x")]), mcc="5411",
            amount=Money(1, CNY), country="CN", merchant_name="S", merchant_city="C", reference="R" * 26)


@needs_vectors
def test_emvco_consumer_sample_fields_and_no_card_number_in_repr():
    exp = BY_INDEX[92]["expected"]
    code = qrpay.parse_cpm(BY_INDEX[92]["data"])
    assert [(a.aid, a.label) for a in code.applications] == [
        (x["adf_name"], x["label"]) for x in exp["applications"]]
    app = code.application
    assert app.pan == exp["pan"] and app.cardholder_name == exp["cardholder_name"]
    values = app.values
    assert values["iad"] == exp["issuer_application_data"] and values["cryptogram"] == exp["application_cryptogram"]
    assert values["atc"] == exp["atc"] and values["unpredictable_number"] == exp["unpredictable_number"]
    assert bytes.fromhex(values["language"]).decode() == exp["language_preference"]
    for shown in (repr(code), repr(app), str(app.public_dict()), qrpay.display_text(code, BY_INDEX[92]["data"])):
        assert exp["pan"] not in shown
    assert "123456******3458" in qrpay.display_text(code, BY_INDEX[92]["data"])


@needs_vectors
def test_other_consumer_vectors():
    assert qrpay.parse_cpm(BY_INDEX[93]["data"]).application.aid == "A000000333010102"
    assert qrpay.parse_cpm(BY_INDEX[93]["data"]).application.pan == "6263600100713672"  # from track 2 (57)
    assert qrpay.parse_cpm(BY_INDEX[96]["data"]).application.pan == BY_INDEX[96]["expected"]["pan"]
    assert qrpay.parse_cpm(BY_INDEX[97]["data"]).application.cardholder_name == "SENDY AGUSTIAN"
    assert "9F76" in qrpay.parse_cpm(BY_INDEX[98]["data"]).application.unknown_tags
    # the source calls 94 malformed only for its own type mapping: it is a well-formed CPM
    assert qrpay.parse_cpm(BY_INDEX[94]["data"]).application.aid == "A0000000555555"
    refused("duplicate_tag", qrpay.parse_cpm_bytes, bytes.fromhex(BY_INDEX[95]["data"]))
    refused("malformed_tlv", qrpay.parse_cpm, BY_INDEX[95]["data"])  # as base64 text it is garbage bytes
    refused("no_application", qrpay.parse_cpm, BY_INDEX[100]["data"])  # nothing to pay with


def test_cpm_expiry_and_malformed_tlv():
    app = qrpay.parse_cpm(cpm_text(expiry="280229")).application
    assert app.expiry.isoformat() == "2028-02-29"
    raw = base64.b64decode(cpm_text())
    refused("malformed_tlv", qrpay.parse_cpm_bytes, raw[:-3])  # cut inside a value
    refused("malformed_tlv", qrpay.parse_cpm_bytes, raw[:7] + b"\x61\x84\x00\x00\x00\x01\x00")  # 4-byte length
    refused("malformed_base64", qrpay.parse_cpm, "hQVDUFYw!!")


def test_what_is_not_a_payment_code():
    assert qrpay.classify("https://example.com/pay?x=1").description.startswith("a web address")
    assert qrpay.classify("WIFI:S:shop;T:WPA;P:secret;;").kind is CodeKind.OTHER
    assert qrpay.classify("hello").kind is CodeKind.OTHER
    assert qrpay.classify("2812345678901234567", ["28"]).kind is CodeKind.WALLET_NUMERIC
    assert qrpay.classify("2812345678901234567", ["30"]).kind is CodeKind.OTHER
    assert qrpay.classify("28123", ["28"]).kind is CodeKind.OTHER
    numeric = qrpay.parse_numeric("281234567890123456", ["28"])
    assert numeric.masked == "281234********3456" and "281234567890123456" not in repr(numeric)


@needs_vectors
def test_hostile_inputs_have_their_own_reasons():
    refused("too_long", qrpay.classify, "A" * 4096)
    refused("too_long", qrpay.classify, BY_INDEX[38]["data"] * 14)
    refused("control_character", qrpay.classify, "000201\x00010211")
    refused("control_character", qrpay.classify, "hello\x00world")
    refused("empty_code", qrpay.classify, "")
    text = BY_INDEX[63]["data"]
    refused("crc_mismatch", qrpay.classify, text[:-4] + ("0000" if text[-4:] != "0000" else "1111"))


# -- fuzzing: whatever comes in, only QrPayloadError goes out --------------------------------------

PARSERS = [qrpay.classify, qrpay.parse_mpm, qrpay.parse_cpm, qrpay.parse_wallet_code,
           lambda t: qrpay.parse_numeric(t, ["28"])]


def only_payload_errors(fn, value) -> None:
    try:
        fn(value)
    except QrPayloadError as exc:
        assert exc.reason and exc.message
    # anything else propagates and fails the test


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_any_text(text):
    for fn in PARSERS:
        only_payload_errors(fn, text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([it["data"] for _, it in MPM] or ["000201"]), st.integers(0, 400), st.integers(0, 400),
       st.text(max_size=6))
def test_fuzz_mutated_merchant_codes(base, at, cut, insert):
    at, cut = at % (len(base) + 1), cut % (len(base) + 1)
    for mutated in (base[:at] + insert + base[at:], base[:cut], base[:at] + base[at + 1:], "000201" + base[at:]):
        only_payload_errors(qrpay.classify, mutated)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_consumer_bytes(data):
    only_payload_errors(qrpay.parse_cpm_bytes, data)
    only_payload_errors(qrpay.parse_cpm_bytes, b"\x85\x05CPV01" + data)
    only_payload_errors(qrpay.classify, base64.b64encode(b"\x85\x05CPV01" + data).decode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=160))
def test_fuzz_wallet_code_bytes(data):
    import base45

    only_payload_errors(qrpay.classify, "WP1:" + base45.b45encode(data).decode())
    only_payload_errors(qrpay.classify, "WP1:" + base45.b45encode(b"\x01\x01" + data).decode())
