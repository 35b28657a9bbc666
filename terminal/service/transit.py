"""Transit gates: the fare table, taps by card or code at a gate, the gate lane and its status, and
a card's journeys from the back office."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from terminal.core.emv import ApduTransport
from terminal.errors import ConfigError, WalletposError
from terminal.payment import FareResult
from terminal.service.base import ServiceBase

# A gate's code is loaded when a gate is used (see terminal.bootstrap): a cashier's start does not pay for it.
if TYPE_CHECKING:
    from terminal.core import fares
    from terminal.gate.lane import GateEvent, GateLane
    from terminal.transit import GatePlace, TransitTaps


class TransitOps(ServiceBase):
    """A transit gate's operations."""

    # -- transit gates ----------------------------------------------------------------------------

    def _require_transit(self) -> TransitTaps:
        if self._transit is None:
            raise ConfigError("this terminal has no transit gate configured ([terminal] mode = \"transit\")")
        return self._transit()

    @property
    def fare_table(self) -> fares.FareTable:
        """The fare table in force (`[transit] fare_table`; read on first use)."""
        return self._require_transit().table

    def gate_place(self, station: str | None = None, direction: str | None = None,
                   gate_id: str | None = None) -> GatePlace:
        """The configured gate (station, direction, gate id), with any of them replaced."""
        from terminal.transit import GatePlace

        place = GatePlace.configured(self.config)
        return GatePlace(gate_id or place.gate_id, station or place.station, direction or place.direction)

    def gate_tap(self, transport: ApduTransport, place: GatePlace | None = None, *,
                 started: float | None = None) -> FareResult:
        """A card tapped at a gate: read it, decide the tap (gate rules, fare) and journal it as a
        fare row (`terminal.transit.TransitTaps.tap_card`, `FarePayments.charge_fare`)."""
        return self._require_transit().tap_card(transport, place or self.gate_place(), started=started)

    def gate_code(self, text: str, place: GatePlace | None = None, *, started: float | None = None) -> FareResult:
        """A wallet code shown to a gate's camera: verified offline, decided and journaled."""
        return self._require_transit().tap_code(text, place or self.gate_place(), started=started)

    @property
    def gate(self) -> GateLane | None:
        """The gate lane of `walletpos gate` (None unless bootstrapped with gate devices)."""
        return self._gate

    def start_gate(self) -> GateLane:
        """Start the gate lane: reader and camera armed for good, every tap decided and the gate driven."""
        if self._gate is None:
            raise WalletposError("no gate devices: bootstrap with gate=GateDevices(...)")
        self._gate.start()
        return self._gate

    def on_gate_event(self, listener: Callable[[GateEvent], None]) -> None:
        """Be told of every decided tap (the passenger display)."""
        if self._gate is not None:
            self._gate.subscribe(listener)

    def gate_status(self) -> dict[str, Any]:
        """The technician's view of a gate: taps per minute, decision latency (p50/p99), reader,
        camera and gate hardware state (from the running lane, or from the status file the running
        `walletpos gate` writes when asked from another process), the deny list's version, size and
        memory, the sync queue and the last sync."""
        from terminal.gate.lane import read_status_file
        from terminal.transit import GatePlace

        if self._gate is not None:
            out: dict[str, Any] = {"running_here": True, **self._gate.status()}
        else:
            written = read_status_file(self.data_dir)
            out = {"running_here": False, "status_file": written}
            place = GatePlace.configured(self.config)
            out["gate"] = (written or {}).get("gate") or {"id": place.gate_id, "station": place.station,
                                                          "direction": place.direction}
            for key in ("devices", "taps_per_minute", "decision_ms", "outcomes", "signs", "uptime_s", "pid"):
                out[key] = (written or {}).get(key)
            out["status_written_at"] = (written or {}).get("written_at")
        journal = self.journal
        if journal is not None:
            try:
                head = journal.head()
                queue = journal.sync.queue_summary()
            except WalletposError as exc:
                out["journal_problem"] = exc.message
            else:
                out["deny_list"] = {"version": head.deny_version, "entries": head.deny_count,
                                    "memory_bytes": journal.deny.memory_bytes()}
                out["queue"] = {"pending": queue["pending"], "oldest_pending_at": queue["oldest_pending_at"]}
                out["last_sync_at"] = head.last_sync_ok_at
                out["integrity"] = {"ok": head.hold is None, "problem": head.hold}
                since = self.clock() - timedelta(minutes=1)
                out["fare_rows_last_minute"] = sum(1 for row in journal.txns.rows_since(since) if row.kind == "fare")
        return out

    def transit_journeys(self, card_token: str, day: date) -> dict[str, Any]:
        """The back office's journeys and daily charge of a card (`GET /v1/transit/cards/...`)."""
        return self._require_sync().client.transit_journeys(card_token, day)
