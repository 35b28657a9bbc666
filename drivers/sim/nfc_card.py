"""A virtual contactless card in its own process, on nfcpy's UDP driver (the simulated RF link).

    python -m drivers.sim.nfc_card --device udp:localhost:54321 --profile visa [--taps N]

The process is the card: it listens as an NFC-A target (`clf.listen` with SENS_RES, the card's UID
for anticollision, SEL_RES 0x20 = ISO-DEP), answers RATS with an ATS, and then speaks the ISO-DEP
block protocol of ISO/IEC 14443-4 as the PICC:

- I-blocks carry the APDUs; chaining both ways (a chained command is acknowledged with R(ACK) and
  joined; a response longer than the reader's frame size FSD is sent in chained I-blocks, each
  continued when the reader's R(ACK) arrives);
- R-blocks: R(NAK) or R(ACK) with the card's own block number re-sends the last block; R(NAK) with
  the other number is answered with R(ACK) (the presence check nfcpy uses);
- S-blocks: DESELECT ends the activation; S(WTX) is sent by a card configured to be slow
  (`--wtx-ms`) while it "computes", and the reader's S(WTX) answers are awaited.

A complete APDU goes to `card.respond(apdu)` (drivers/sim/cards.py). An empty answer means the card
left the field: the process stops answering until it is presented again. Signals move the card:
SIGUSR1 takes it out of the field (even mid-APDU exchange: the reader then times out, exactly like a
card pulled away), SIGUSR2 presents it again, SIGTERM ends the process.

`start_nfc_card(...)` starts and stops such a process from tests and scripts; it binds the UDP port on
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import math
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

log = logging.getLogger("walletpos.sim.nfc_card")

ROOT = Path(__file__).resolve().parents[2]
FSC_TABLE = (16, 24, 32, 40, 48, 64, 96, 128, 256)
READY_LINE = "READY"
_SLICE = 0.05  # longest wait in one nfcpy call, so the field signals take effect within this
# One listen window: nfcpy's `listen` closes and binds the card's socket again each time it is called,
# and an activation that is under way when a window ends is lost (the reader asks again), so the
# windows are long. (nfcpy's UDP listen waits at least 0.5 s for a first frame anyway.)
_LISTEN_WINDOW = 0.5

# PCB values (ISO/IEC 14443-4, 7.1.1)
_I_BLOCK = 0x02
_R_ACK = 0xA2
_R_NAK = 0xB2
_S_DESELECT = 0xC2
_S_WTX = 0xF2
_CHAINING = 0x10
_CID_FOLLOWS = 0x08
_NAD_FOLLOWS = 0x04


class CardLike(Protocol):
    name: str
    uid: bytes

    def reset(self) -> None: ...

    def respond(self, apdu: bytes) -> bytes: ...


class LeftField(Exception):
    """The card was taken out of the RF field (SIGUSR1, or the card itself said so)."""


class Deselected(Exception):
    """The reader sent S(DESELECT): the activation is over."""


@dataclass(frozen=True, slots=True)
class IsoDepConfig:
    """What the card announces in its ATS and how it behaves."""

    fsci: int = 8  # frame size the card accepts: FSC_TABLE[fsci] (8 = 256 bytes)
    fwi: int = 8  # frame waiting time 302 µs * 2**fwi (8 ≈ 77 ms)
    max_frame: int | None = None  # cap on the frames the card sends (forces chaining), default FSD
    wtx_ms: int = 0  # simulated processing time per APDU, bridged with S(WTX) requests
    idle_timeout: float = 30.0  # an activation with no frame for this long ends (reader gone)
    historical: bytes = b"\x80"  # ATS historical bytes (category indicator only)

    @property
    def fwt(self) -> float:
        return float(4096 / 13.56e6 * 2**self.fwi)

    def ats(self) -> bytes:
        # T0: TA(1), TB(1), TC(1) present + FSCI; TA(1) 106 kbps only; TB(1) FWI, SFGI 0; TC(1) no NAD/CID.
        body = bytes([0x70 | self.fsci, 0x00, (self.fwi << 4) & 0xF0, 0x00]) + self.historical
        return bytes([len(body) + 1]) + body


class IsoDepTarget:
    """The card (PICC) side of the ISO-DEP block protocol, for one activation.

    `handle(frame)` takes one frame from the reader and returns the frame to answer (None: stay
    silent). `exchange(frame, timeout)` sends a frame and returns the reader's next one; it is used
    only for S(WTX) round trips in the middle of a command."""

    def __init__(self, card: CardLike, config: IsoDepConfig, fsd: int,
                 exchange: Callable[[bytes, float], bytes | None]) -> None:
        self.card = card
        self.config = config
        self.max_inf = max(1, min(fsd, config.max_frame or fsd) - 3)  # PCB + 2 CRC bytes on a real link
        self.exchange = exchange
        self.block = 1  # PICC block number starts at 1 (rule C)
        self.last: bytes | None = None
        self.chain_in = bytearray()
        self.chain_out = b""
        self.apdus = 0

    def handle(self, frame: bytes) -> bytes | None:
        if not frame:
            return None
        pcb = frame[0]
        prefix = frame[1:2] if pcb & _CID_FOLLOWS else b""
        if pcb & 0xC0 == 0x00:
            if pcb & _NAD_FOLLOWS:
                return None  # this card announced no NAD support
            return self._i_block(pcb, prefix, frame[1 + len(prefix):])
        if pcb & 0xE0 == 0xA0:
            return self._r_block(pcb, prefix)
        if pcb & 0xC0 == 0xC0:
            if pcb & 0x30 == 0x00:  # DESELECT
                raise Deselected(bytes([_S_DESELECT | (pcb & _CID_FOLLOWS)]) + prefix)
            return None  # an unexpected S(WTX) answer: ignore
        return None  # not a valid block: stay silent, the reader will retry

    def _send(self, frame: bytes) -> bytes:
        self.last = frame
        return frame

    def _i_block(self, pcb: int, prefix: bytes, inf: bytes) -> bytes | None:
        self.block = pcb & 0x01  # rule D: toggle on every I-block (= take its number)
        cid = pcb & _CID_FOLLOWS
        if pcb & _CHAINING:
            self.chain_in += inf
            return self._send(bytes([_R_ACK | cid | self.block]) + prefix)
        apdu = bytes(self.chain_in) + inf
        self.chain_in.clear()
        response = self.card.respond(apdu)
        self.apdus += 1
        if not response:
            raise LeftField("the card left the field")
        if self.config.wtx_ms:
            self._wait_with_wtx(prefix, cid)
        self.chain_out = bytes(response)
        return self._next_chunk(prefix, cid)

    def _next_chunk(self, prefix: bytes, cid: int) -> bytes:
        chunk, self.chain_out = self.chain_out[: self.max_inf], self.chain_out[self.max_inf:]
        more = _CHAINING if self.chain_out else 0
        return self._send(bytes([_I_BLOCK | more | cid | self.block]) + prefix + chunk)

    def _r_block(self, pcb: int, prefix: bytes) -> bytes | None:
        number = pcb & 0x01
        cid = pcb & _CID_FOLLOWS
        if number == self.block:
            return self._send(self.last) if self.last is not None else None  # rule 11: re-send
        if pcb & 0x10:  # R(NAK), other number: rule 12
            return bytes([_R_ACK | cid | self.block]) + prefix
        if self.chain_out:  # R(ACK), other number, while chaining: rules E and 13
            self.block ^= 1
            return self._next_chunk(prefix, cid)
        return self._send(self.last) if self.last is not None else None

    def _wait_with_wtx(self, prefix: bytes, cid: int) -> None:
        remaining = self.config.wtx_ms / 1000
        fwt = self.config.fwt
        while remaining > 0:
            wtxm = max(1, min(59, math.ceil(remaining / fwt)))
            answer = self.exchange(bytes([_S_WTX | cid]) + prefix + bytes([wtxm]), 2 * fwt)
            if not answer or answer[0] & 0xF7 != _S_WTX:
                raise LeftField("the reader did not answer S(WTX)")
            step = min(remaining, wtxm * fwt * 0.5)
            time.sleep(step)
            remaining -= step


# -- the process ------------------------------------------------------------------------------------


def _bind_loopback(device: object) -> None:
    """nfcpy's UDP target binds 0.0.0.0; bind the device's own (loopback) address instead, and fail
    loudly when another card already holds the port."""
    host, port = device.addr  # type: ignore[attr-defined]

    def bind(time_to_return: float) -> bool:
        try:
            device.socket.bind((host, port))  # type: ignore[attr-defined]
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE, f"UDP {host}:{port} is taken (another card?)") from exc
            raise
        return True

    device._bind_socket = bind  # type: ignore[attr-defined]


class CardProcess:
    """The card's main loop: listen, run one activation, count taps, obey the field signals."""

    def __init__(self, device_path: str, card: CardLike, config: IsoDepConfig, taps: int | None = None) -> None:
        import nfc
        import nfc.clf

        self.nfc = nfc
        self.card = card
        self.config = config
        self.taps = taps
        self.taps_done = 0
        self.in_field = True
        self.stopping = False
        self.clf = nfc.ContactlessFrontend(device_path)  # IOError(ENODEV) when the path is wrong
        if device_path.startswith("udp"):
            _bind_loopback(self.clf.device)
        uid = bytes(card.uid)
        self.target = nfc.clf.LocalTarget("106A")
        self.target.sens_res = bytearray(b"\x44\x00" if len(uid) == 7 else b"\x04\x00")
        self.target.sdd_res = bytearray(uid)
        self.target.sel_res = bytearray(b"\x20")

    # Signal handlers only set flags; the loops below look at them at least every _SLICE seconds.
    # (Raising from a handler could land anywhere, e.g. inside nfcpy between closing a socket and
    # forgetting it.)

    def leave_field(self, *_: object) -> None:
        self.in_field = False

    def enter_field(self, *_: object) -> None:
        self.in_field = True

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> int:
        while not self.stopping and (self.taps is None or self.taps_done < self.taps):
            if not self.in_field:
                time.sleep(0.02)
                continue
            activated = self.clf.listen(self.target, _LISTEN_WINDOW)
            if activated is None or not activated.tt4_cmd or activated.tt4_cmd[0] != 0xE0:
                continue
            if not self.in_field:
                continue
            self.taps_done += 1
            try:
                self._activation(bytes(activated.tt4_cmd))
            except LeftField as exc:
                log.info("card %s out of the field: %s", self.card.name, exc)
                self.in_field = False
            self._mute()
        self._mute()
        return 0

    def _mute(self) -> None:
        device = self.clf.device
        if device is not None:
            device.mute()

    def _exchange(self, frame: bytes | None, timeout: float) -> bytes | None:
        """Send `frame` (None: nothing) and wait up to `timeout` for the reader's next frame, in
        slices, so that being taken out of the field takes effect at once."""
        deadline = time.monotonic() + timeout
        errors = self.nfc.clf
        payload = bytearray(frame) if frame is not None else None
        while True:
            if not self.in_field or self.stopping:
                raise LeftField("taken out of the field")
            remaining = deadline - time.monotonic()
            if timeout == 0:
                self.clf.exchange(payload, 0)
                return None
            try:
                data = self.clf.exchange(payload, max(0.001, min(_SLICE, remaining)))
            except errors.TimeoutError:
                if remaining <= _SLICE:
                    raise
                payload = None  # sent already; keep listening
                continue
            return bytes(data) if data is not None else None

    def _activation(self, rats: bytes) -> None:
        errors = self.nfc.clf
        fsd = FSC_TABLE[min(rats[1] >> 4, 8)] if len(rats) > 1 else 16
        self.card.reset()
        iso = IsoDepTarget(self.card, self.config, fsd, self._exchange)
        frame: bytes | None = self.config.ats()
        log.info("card %s activated (FSD %d)", self.card.name, fsd)
        while True:
            try:
                command = self._exchange(frame, self.config.idle_timeout)
            except errors.BrokenLinkError:
                log.info("RF off after %d APDUs", iso.apdus)
                return
            except errors.TimeoutError:
                log.info("no frame for %.0f s; activation ended", self.config.idle_timeout)
                return
            except errors.CommunicationError as exc:
                log.debug("bad frame: %s", exc)
                frame = None
                continue
            if command is None or command in (b"\x26", b"\x52"):  # a new poll: this activation is over
                return
            try:
                frame = iso.handle(command)
            except Deselected as deselect:
                self._exchange(deselect.args[0], 0)
                log.info("deselected after %d APDUs", iso.apdus)
                return


def load_card(profile: str | None, factory: str | None) -> CardLike:
    """`--card module:callable` (a zero-argument factory) or `--profile name` (drivers.sim.cards)."""
    if factory:
        module_name, _, attr = factory.partition(":")
        obj = getattr(importlib.import_module(module_name), attr or "make_card")
        card: CardLike = obj()
        return card
    from drivers.sim.cards import make_card

    return make_card(profile or "visa")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drivers.sim.nfc_card",
                                     description="Be a contactless ISO-DEP card on nfcpy's UDP link.")
    parser.add_argument("--device", default="udp:localhost:54321", help="nfcpy device path of the card side")
    parser.add_argument("--profile", default="visa", help="card profile (drivers.sim.cards)")
    parser.add_argument("--card", default=None, help="module:factory of a card object instead of --profile")
    parser.add_argument("--taps", type=int, default=None, help="exit after this many activations")
    parser.add_argument("--fsci", type=int, default=8, choices=range(9), help="card frame size index (8=256)")
    parser.add_argument("--fwi", type=int, default=8, choices=range(15), help="frame waiting time index")
    parser.add_argument("--max-frame", type=int, default=None, help="largest frame the card sends (chaining)")
    parser.add_argument("--wtx-ms", type=int, default=0, help="simulated processing time per APDU (S(WTX))")
    parser.add_argument("--idle-timeout", type=float, default=30.0)
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")

    card = load_card(args.profile, args.card)
    config = IsoDepConfig(fsci=args.fsci, fwi=args.fwi, max_frame=args.max_frame, wtx_ms=args.wtx_ms,
                          idle_timeout=args.idle_timeout)
    try:
        process = CardProcess(args.device, card, config, taps=args.taps)
    except OSError as exc:
        print(f"error: cannot open {args.device}: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGUSR1, process.leave_field)
    signal.signal(signal.SIGUSR2, process.enter_field)
    signal.signal(signal.SIGTERM, process.stop)
    print(f"{READY_LINE} {card.name} on {args.device}", flush=True)
    try:
        return process.run()
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


# -- for tests and scripts --------------------------------------------------------------------------


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing holds right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NfcCardProcess:
    """A running card process (see `start_nfc_card`)."""

    def __init__(self, proc: subprocess.Popen[str], port: int, log_file: IO[str]) -> None:
        self.proc = proc
        self.port = port
        self.device = f"udp:localhost:{port}"
        self._log = log_file

    def remove(self) -> None:
        """Take the card out of the field (it stops answering, even mid-exchange)."""
        self.proc.send_signal(signal.SIGUSR1)

    def present(self) -> None:
        """Put the card back in the field."""
        self.proc.send_signal(signal.SIGUSR2)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def log_text(self) -> str:
        """What the process wrote to stderr so far."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def stop(self) -> str:
        """End the process (idempotent); returns what it wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()
        return self.log_text()


@contextlib.contextmanager
def start_nfc_card(profile: str = "visa", port: int | None = None, *, taps: int | None = None,
                   card_factory: str | None = None, extra_args: tuple[str, ...] = (),
                   ready_timeout: float = 20.0) -> Iterator[NfcCardProcess]:
    """Run `python -m drivers.sim.nfc_card` for the duration of the block; yields the process handle
    (its `.device` is the reader's device path, `udp:localhost:<port>`)."""
    port = port or free_udp_port()
    args = [sys.executable, "-m", "drivers.sim.nfc_card", "--device", f"udp:localhost:{port}"]
    args += ["--card", card_factory] if card_factory else ["--profile", profile]
    if taps is not None:
        args += ["--taps", str(taps)]
    args += list(extra_args)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryFile("w+", prefix="walletpos-nfc-card-") as log_file:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log_file,
                                stdin=subprocess.DEVNULL, text=True)
        handle = NfcCardProcess(proc, port, log_file)
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + ready_timeout
            line = ""
            while time.monotonic() < deadline and proc.poll() is None:
                ready, _, _ = select.select([proc.stdout], [], [], 0.1)
                if ready:
                    line = proc.stdout.readline()
                    break
            if not line.startswith(READY_LINE):
                log_text = handle.stop()
                raise RuntimeError(f"the card process did not start (exit {proc.returncode}): "
                                   f"{log_text.strip()[-1500:]}")
            yield handle
        finally:
            handle.stop()


if __name__ == "__main__":
    sys.exit(main())
