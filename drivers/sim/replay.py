"""Cards that replay recorded EMV traces: the `emv_apdu_sequence` items of the shared public vectors
(public_vectors.json, described in the README.md beside it). `shared_vectors_path()` is the one place
that says where they are: $WALLETPOS_VECTORS, else ../shared/vectors beside the repository root.

A `ReplayCard` behaves like a `VirtualCard` (same attributes, `reset`, `respond`) but answers from the
recording. How a command finds its recorded answer:

1. The next recorded step (steps with no recorded response are skipped): taken when its command is
   unknown in the source (`""` or null, answered in order) or matches.
2. Otherwise the first matching step further on (the terminal left out some commands of the trace).
3. Otherwise the latest matching step before (the terminal repeats a command, e.g. SELECT again).
4. Otherwise, for GPO / GENERATE AC / COMPUTE CRYPTOGRAPHIC CHECKSUM / INTERNAL and EXTERNAL
   AUTHENTICATE, any recorded step with the same instruction (further on first).
5. Otherwise a status word: 6A82 for SELECT, 6A83 for READ RECORD, 6985 for another instruction the
   trace knows, 6D00 for one it does not.

Commands match on CLA INS P1 P2 and the data field, ignoring Le; for the instructions in 4. the data
(amount, date, unpredictable number) is ignored as well. The sources that store bare responses
(MichaelsPlayground, lumag, sasc999, per the README) get 9000 appended to each response.

Every PAN in the vectors is treated as a real one: it is never logged, and `repr` does not show it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.sim.cards import command_data, contactless_atr
from drivers.sim.profiles import DEFAULT_HISTORICAL_BYTES
from terminal.core.tlv import flatten, parse
from terminal.errors import TlvError

VECTORS_FILE = "public_vectors.json"
ENV_VECTORS = "WALLETPOS_VECTORS"
SEQUENCE_KIND = "emv_apdu_sequence"

# sources whose responses carry no status word (README "In a sequence")
BARE_RESPONSE_SOURCES = ("MichaelsPlayground/", "lumag/", "sasc999/")

# instructions whose data is the terminal's transaction data (amount, date, unpredictable number)
DATA_VARYING_INS = frozenset({0xA8, 0xAE, 0x2A, 0x88, 0x82})
INS_SELECT = 0xA4
INS_READ_RECORD = 0xB2


def command_key(apdu: bytes) -> bytes:
    """What two commands must share to get the same recorded answer: the header and the data field
    without Le; only the header for instructions whose data changes every transaction."""
    if len(apdu) < 4:
        return bytes(apdu)
    if apdu[1] in DATA_VARYING_INS:
        return bytes(apdu[:4])
    data = command_data(apdu)
    return bytes(apdu) if data is None else bytes(apdu[:4]) + data


@dataclass(frozen=True)
class ReplayStep:
    """One recorded exchange. `command` None: the source does not say (answered in order)."""

    command: bytes | None
    response: bytes | None
    key: bytes | None


def _steps(item: Mapping[str, Any], bare: bool) -> tuple[ReplayStep, ...]:
    steps = []
    for entry in item["data"]:
        command = bytes.fromhex(entry["command"]) if entry.get("command") else None
        response = entry.get("response")
        answer = None if response is None else bytes.fromhex(response) + (b"\x90\x00" if bare else b"")
        steps.append(ReplayStep(command, answer, None if command is None else command_key(command)))
    return tuple(steps)


def _pan_from_responses(steps: tuple[ReplayStep, ...], bare: bool) -> str:
    """The PAN a terminal would read: the first 5A, else the PAN part of the first track 2 (57, 9F6B)."""
    track2_pan = ""
    for step in steps:
        if not step.response or len(step.response) < 3:
            continue
        try:
            objects = flatten(parse(step.response[:-2]))
        except TlvError:
            continue
        if 0x5A in objects:
            return objects[0x5A].hex().upper().rstrip("F")
        for track_tag in (0x57, 0x9F6B):  # track 2 equivalent data; 9F6B in magstripe-mode records
            if track_tag in objects and not track2_pan:
                track2_pan = objects[track_tag].hex().upper().split("D", 1)[0]
    return track2_pan


class ReplayCard:
    """A card that answers from one recorded `emv_apdu_sequence` item (see the module docstring)."""

    def __init__(self, item: Mapping[str, Any]) -> None:
        if item.get("kind") != SEQUENCE_KIND:
            raise ValueError(f"a replay card needs an {SEQUENCE_KIND} item, got {item.get('kind')!r}")
        self.label: str = item.get("label", "")
        self.source: str = item.get("source", "")
        self.brand: str = item.get("brand", "")
        self.expected: Mapping[str, Any] = item.get("expected") or {}
        self.bare_responses = self.source.startswith(BARE_RESPONSE_SOURCES)
        self.steps = _steps(item, self.bare_responses)
        self.name = self.label
        expected_pan = next((str(self.expected[k]) for k in ("card_number", "pan", "pan_found")
                             if self.expected.get(k)), "")
        self.pan = _pan_from_responses(self.steps, self.bare_responses) or expected_pan
        digest = hashlib.sha256(b"walletpos-replay:" + self.source.encode()).digest()
        self.uid = b"\x04" + digest[:6]
        self.atr = contactless_atr(bytes.fromhex(DEFAULT_HISTORICAL_BYTES))
        self._known_ins = frozenset(step.key[1] for step in self.steps if step.key and len(step.key) > 1)
        self.apdu_count = 0
        self.removed = False
        self._cursor = 0

    def __repr__(self) -> str:
        return f"ReplayCard({self.label[:40]!r}, steps={len(self.steps)}, cursor={self._cursor})"

    def reset(self) -> None:
        self.apdu_count = 0
        self.removed = False
        self._cursor = 0

    def respond(self, apdu: bytes) -> bytes:
        """The recorded answer to `apdu` (data + SW1 SW2); never raises."""
        if self.removed:
            return b""
        apdu = bytes(apdu)
        key = command_key(apdu)
        index = self._match(key)
        self.apdu_count += 1
        if index is None:
            return self._no_match(apdu)
        self._cursor = index + 1
        answer = self.steps[index].response
        return answer if answer is not None else b"\x6f\x00"

    def _match(self, key: bytes) -> int | None:
        steps = self.steps
        count = len(steps)
        cursor: int = self._cursor
        while cursor < count and steps[cursor].response is None:
            cursor += 1
        if cursor < count and steps[cursor].key in (None, key):
            return cursor
        for i in range(cursor, count):
            if steps[i].key == key and steps[i].response is not None:
                return i
        for i in range(min(cursor, count) - 1, -1, -1):
            if steps[i].key == key and steps[i].response is not None:
                return i
        if len(key) >= 2 and key[1] in DATA_VARYING_INS:
            for i in itertools.chain(range(cursor, count), range(min(cursor, count))):
                step_key = steps[i].key
                if step_key and len(step_key) >= 2 and step_key[1] == key[1] and steps[i].response is not None:
                    return i
        return None

    def _no_match(self, apdu: bytes) -> bytes:
        ins = apdu[1] if len(apdu) > 1 else -1
        if ins == INS_SELECT:
            return b"\x6a\x82"
        if ins == INS_READ_RECORD:
            return b"\x6a\x83"
        return b"\x69\x85" if ins in self._known_ins else b"\x6d\x00"


def shared_vectors_path() -> Path | None:
    """The shared vectors directory: $WALLETPOS_VECTORS (the directory or the JSON file in it), else
    ../shared/vectors next to the repository root. None when it is not there."""
    env = os.environ.get(ENV_VECTORS)
    if env:
        candidate = Path(env)
        if candidate.is_file():
            candidate = candidate.parent
    else:
        candidate = Path(__file__).resolve().parents[2].parent / "shared" / "vectors"
    return candidate if (candidate / VECTORS_FILE).is_file() else None


def load_vector_items(path: str | Path) -> list[dict[str, Any]]:
    """All items of the vectors file (`path` is the file or its directory)."""
    file = Path(path)
    if file.is_dir():
        file = file / VECTORS_FILE
    with file.open(encoding="utf-8") as handle:
        items = json.load(handle)
    if not isinstance(items, list):
        raise ValueError(f"{file}: expected a JSON list of vector items")
    return items


def load_vector_cards(path: str | Path) -> list[tuple[str, ReplayCard]]:
    """(label, card) for every `emv_apdu_sequence` item (`path` is the file or its directory)."""
    return [(item.get("label", ""), ReplayCard(item)) for item in load_vector_items(path)
            if item.get("kind") == SEQUENCE_KIND]
