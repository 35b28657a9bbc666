"""Transit gate mode: the gate lane (reader, camera and gate hardware of one gate, every tap decided
and journaled as a fare row: `terminal.gate.lane`) and the passenger display (`terminal.gate.display`,
Textual). `walletpos gate` (terminal/commands/gate.py) runs them; the fares and gate rules themselves
are pure (`terminal.core.fares`, `terminal.core.gaterules`) and every tap goes through
`terminal.farepay.FarePayments.charge_fare`."""
