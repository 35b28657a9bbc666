"""Gate hardware by name (`[transit] gate_device`), as `drivers.readers` opens readers: `sim:` the
simulated gate, `serial:<device>[@baud]` a serial relay board. The drivers are imported only when
asked for (pyserial only for a serial board)."""

from __future__ import annotations

from drivers.gate import GateHardware
from terminal.errors import ConfigError

GATE_KINDS = ("sim", "serial")


def open_gate(spec: str) -> GateHardware:
    """The gate hardware a `[transit] gate_device` string names (see the table above). Raises
    ConfigError for a spec no driver understands, GateHardwareError when the device cannot be opened."""
    kind, sep, rest = spec.strip().partition(":")
    if kind == "sim":
        from drivers.simgate import SimGate

        return SimGate()
    if kind == "serial" and sep and rest:
        from drivers.serialgate import SerialRelayGate

        device, _, baud = rest.partition("@")
        return SerialRelayGate(device, int(baud) if baud.isdigit() else 9600)
    raise ConfigError(f"gate device {spec!r}: expected sim: or serial:<device>[@baud]")
