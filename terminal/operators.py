"""Operators (cashier, supervisor, technician) and their PINs.

PINs are 4-8 digits, stored only as scrypt hashes with a per-operator salt in the journal database.
Each wrong PIN counts; after `max_failed_pins` in a row the operator is locked for
`lockout_minutes` (the audit log records sign-ins, failures, lockouts and supervisor approvals).
A correct PIN during a lockout is refused too. A supervisor PIN approving a refund or a void goes
through the same counting, so guessing it at the refund screen locks the supervisor as well.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from terminal.errors import WalletposError
from terminal.journal import Journal

Role = Literal["cashier", "supervisor", "technician"]
ROLES: tuple[Role, ...] = ("cashier", "supervisor", "technician")

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class OperatorError(WalletposError):
    title = "Operator error"


@dataclass(frozen=True, slots=True)
class Operator:
    id: str
    name: str
    role: Role
    active: bool = True


@dataclass(frozen=True, slots=True)
class PinCheck:
    """The outcome of one PIN entry. `reason`: ok, unknown_operator, inactive, locked, wrong_pin,
    not_a_supervisor."""

    ok: bool
    reason: str
    operator: Operator | None = None
    attempts_left: int = 0
    locked_until: datetime | None = None


def check_pin_format(pin: str) -> None:
    if not re.fullmatch(r"[0-9]{4,8}", pin or ""):
        raise OperatorError("a PIN is 4 to 8 digits")


def check_operator_id(operator_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", operator_id or ""):
        raise OperatorError("an operator id is 1-32 letters, digits, '.', '_' or '-'")


def hash_pin(pin: str, salt: bytes) -> bytes:
    return hashlib.scrypt(pin.encode("ascii"), salt=salt, **_SCRYPT)


class Operators:
    """Operator records and PIN checks over the journal database."""

    def __init__(self, journal: Journal, *, max_failed_pins: int, lockout: timedelta) -> None:
        self.journal = journal
        self.max_failed_pins = max_failed_pins
        self.lockout = lockout

    def add(self, operator_id: str, name: str, role: Role, pin: str, *, now: datetime,
            actor: str | None = None) -> Operator:
        check_operator_id(operator_id)
        check_pin_format(pin)
        if role not in ROLES:
            raise OperatorError(f"role must be one of {', '.join(ROLES)}")
        name = name.strip()
        if not name or len(name) > 40:
            raise OperatorError("a name is 1-40 characters")
        salt = secrets.token_bytes(16)
        self.journal.operators.save(operator_id, name, role, salt, hash_pin(pin, salt), now=now)
        self.journal.audit.record("operator_saved", now=now, actor=actor,
                                  details={"operator": operator_id, "role": role})
        return Operator(operator_id, name, role)

    def get(self, operator_id: str) -> Operator | None:
        record = self.journal.operators.record(operator_id)
        if record is None:
            return None
        return Operator(record["id"], record["name"], record["role"], bool(record["active"]))

    def records(self) -> list[dict[str, object]]:
        """Every operator with its failed attempts and lockout (no PIN hashes)."""
        return [{k: r[k] for k in ("id", "name", "role", "active", "failed_attempts", "locked_until")}
                for r in self.journal.operators.records()]

    def all(self) -> list[Operator]:
        return [Operator(r["id"], r["name"], r["role"], bool(r["active"])) for r in self.journal.operators.records()]

    def unlock(self, operator_id: str, *, now: datetime, actor: str | None = None) -> None:
        if self.journal.operators.record(operator_id) is None:
            raise OperatorError(f"no operator {operator_id!r}")
        self.journal.operators.set_failures(operator_id, 0, None)
        self.journal.audit.record("operator_unlocked", now=now, actor=actor, details={"operator": operator_id})

    def check(self, operator_id: str, pin: str, *, now: datetime, purpose: str = "sign_in",
              require_role: Role | None = None) -> PinCheck:
        """Check a PIN, counting failures and locking after too many; every outcome is audited."""
        record = self.journal.operators.record(operator_id)
        if record is None:
            self.journal.audit.record(f"{purpose}_failed", now=now,
                                      details={"operator": operator_id, "reason": "unknown"})
            return PinCheck(False, "unknown_operator")
        operator = Operator(record["id"], record["name"], record["role"], bool(record["active"]))
        if not operator.active:
            return PinCheck(False, "inactive", operator)
        locked_until = datetime.fromisoformat(record["locked_until"]) if record["locked_until"] else None
        if locked_until is not None and now < locked_until:
            self.journal.audit.record(f"{purpose}_refused_locked", now=now, actor=operator.id)
            return PinCheck(False, "locked", operator, 0, locked_until)
        good = hmac.compare_digest(hash_pin(pin or "", bytes.fromhex(record["pin_salt"])),
                                   bytes.fromhex(record["pin_hash"]))
        if not good:
            failures = (0 if locked_until is not None else record["failed_attempts"]) + 1
            if failures >= self.max_failed_pins:
                until = now + self.lockout
                self.journal.operators.set_failures(operator.id, failures, until.isoformat())
                self.journal.audit.record("operator_locked", now=now, actor=operator.id,
                                   details={"purpose": purpose, "until": until.isoformat()})
                return PinCheck(False, "locked", operator, 0, until)
            self.journal.operators.set_failures(operator.id, failures, None)
            self.journal.audit.record(f"{purpose}_failed", now=now, actor=operator.id, details={"reason": "wrong_pin"})
            return PinCheck(False, "wrong_pin", operator, self.max_failed_pins - failures)
        if record["failed_attempts"] or record["locked_until"]:
            self.journal.operators.set_failures(operator.id, 0, None)
        if require_role is not None and operator.role != require_role:
            self.journal.audit.record(f"{purpose}_failed", now=now, actor=operator.id, details={"reason": "role"})
            return PinCheck(False, f"not_a_{require_role}", operator, self.max_failed_pins)
        self.journal.audit.record(f"{purpose}_ok", now=now, actor=operator.id, details={"role": operator.role})
        return PinCheck(True, "ok", operator, self.max_failed_pins)
