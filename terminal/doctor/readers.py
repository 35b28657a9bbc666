"""The card reader: found or not, what it is (driver, model, firmware where PC/SC or nfcpy say), the
ATR of a card lying on it and what it means, and the round trip of a SELECT to that card.

A PC/SC reader is looked at through a context of its own, in shared mode, so the checkout's watcher
(which connects exclusively only while it reads a card) keeps its reader. The simulated reader and an
nfcpy reader the checkout already holds are described through the checkout's own reader object.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from drivers.base import CardReader, ReaderUnavailableError
from terminal.core.atr import describe_atr
from terminal.doctor.checks import Check, Status, advice
from terminal.doctor.context import DoctorContext, reader_kind
from terminal.errors import CardError, ConfigError

AREA = "reader"
SELECT_PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")
SELECT_ROUNDS = 3
RTT_WARN_MS = 50.0
RTT_FAIL_MS = 200.0


def _next_step(kind: str, message: str) -> dict[str, Any]:
    if kind == "pcsc":
        if "service not available" in message or ("pcscd" in message and "running" in message):
            return advice("start_pcscd")
        return advice("plug_pcsc_reader")
    if kind == "nfc":
        return advice("start_udp_card") if "udp" in message else advice("plug_nfc_reader")
    return advice("plug_sim_reader")


def _probe(ctx: DoctorContext, kind: str) -> tuple[CardReader, bool]:
    """(reader to look at, whether it was opened here and must be closed)."""
    spec = ctx.config.reader.device
    if kind == "pcsc":
        from drivers.pcsc import PcscReader

        return PcscReader(spec.partition(":")[2], share="shared"), True
    if ctx.reader is not None:
        return ctx.reader, False
    from drivers.readers import open_reader

    return open_reader(spec), True


def _round_trip(reader: CardReader) -> Check:
    t0 = time.perf_counter()
    session = reader.wait_for_card(0.5)
    if session is None:
        return Check(AREA, "select", "skip", "no card in the field",
                     "the card left before the SELECT; place a card and run walletpos doctor again",
                     ms=(time.perf_counter() - t0) * 1000)
    times: list[float] = []
    sw = ""
    try:
        with session:
            for _ in range(SELECT_ROUNDS):
                s0 = time.perf_counter()
                answer = session.transmit(SELECT_PPSE)
                times.append((time.perf_counter() - s0) * 1000)
                sw = answer[-2:].hex().upper()
    except (CardError, ReaderUnavailableError) as exc:
        return Check(AREA, "select", "fail", "no answer", f"the card did not answer a SELECT: {exc.message}",
                     ms=(time.perf_counter() - t0) * 1000, **advice("card_no_answer"))
    median = statistics.median(times)
    measured = {"round_trip_ms": [round(t, 3) for t in times], "median_ms": round(median, 3), "sw": sw}
    figure = f"{median:.1f} ms median of {len(times)} (SW {sw})"
    ms = (time.perf_counter() - t0) * 1000
    if median >= RTT_FAIL_MS:
        return Check(AREA, "select", "fail", figure, "a SELECT takes longer than a whole payment should",
                     measured=measured, ms=ms, **advice("reader_slow"))
    if median >= RTT_WARN_MS:
        return Check(AREA, "select", "warn", figure, "the reader answers slowly; taps will feel sluggish",
                     measured=measured, ms=ms, **advice("reader_sluggish"))
    return Check(AREA, "select", "pass", figure, "SELECT PPSE round trip to the card on the reader", measured=measured,
                 ms=ms)


def check_reader(ctx: DoctorContext) -> list[Check]:
    spec = ctx.config.reader.device
    kind = reader_kind(spec)
    t0 = time.perf_counter()
    try:
        reader, owned = _probe(ctx, kind)
    except (ConfigError, ImportError) as exc:
        return [Check(AREA, "reader", "fail", "cannot be opened", f"{spec}: {exc}",
                      ms=(time.perf_counter() - t0) * 1000, **advice("reader_driver"))]
    checks: list[Check] = []
    try:
        try:
            info = reader.describe()
        except ReaderUnavailableError as exc:
            return [Check(AREA, "reader", "fail", "not found", exc.message, measured={"device": spec},
                          ms=(time.perf_counter() - t0) * 1000, **_next_step(kind, exc.message))]
        name = info.get("reader") or info.get("device") or spec
        made = " ".join(v for v in (info.get("vendor"), info.get("model")) if v)
        firmware = info.get("firmware")
        figure = name + (f" ({made}" + (f", firmware {firmware}" if firmware else "") + ")" if made else "")
        watched = ""
        if ctx.reader_status is not None:
            watched = f"; the checkout sees it as {ctx.reader_status.state}"
        checks.append(Check(AREA, "reader", "pass", figure, f"{info.get('driver', kind)} reader {spec}{watched}",
                            measured=dict(info), ms=(time.perf_counter() - t0) * 1000))
        t1 = time.perf_counter()
        atr_hex = info.get("atr")
        if not atr_hex:
            state = info.get("card", "none")
            checks.append(Check(AREA, "card", "skip", "no card on the reader" if state != "mute" else "mute card",
                                "place a card on the reader to see its ATR and time a SELECT (or use the test tap "
                                "on the diagnostics screen)", ms=(time.perf_counter() - t1) * 1000))
            return checks
        atr = describe_atr(bytes.fromhex(atr_hex))
        measured = {"atr": atr.hex, "kind": atr.kind, "protocols": list(atr.protocols), "historical": atr.historical}
        if atr.kind == "invalid":
            checks.append(Check(AREA, "card", "fail", f"ATR {atr.hex}", atr.meaning, measured=measured,
                                ms=(time.perf_counter() - t1) * 1000, **advice("atr_invalid")))
            return checks
        status: Status = "pass" if atr.can_pay else "warn"
        checks.append(Check(AREA, "card", status, f"ATR {atr.hex}", atr.meaning, measured=measured,
                            ms=(time.perf_counter() - t1) * 1000,
                            **({} if atr.can_pay else advice("not_a_payment_card"))))
        if kind == "sim" or not owned:
            why = "the simulated reader has no radio" if kind == "sim" else "the checkout holds this reader"
            checks.append(Check(AREA, "select", "skip", "measured by the test tap",
                                f"{why}; the test tap on the diagnostics screen times each command"))
        elif atr.can_pay:
            checks.append(_round_trip(reader))
    finally:
        if owned:
            reader.close()
    return checks


__all__ = ["check_reader"]
