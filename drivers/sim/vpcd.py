"""A virtual card in a real PC/SC reader: the card side of vsmartcard's vpcd.

pcscd loads the vpcd reader driver (`/etc/reader.conf.d/vpcd`: "Virtual PCD" on 127.0.0.1:35963),
which listens on a TCP port; a virtual card is a TCP *client* of that port. Putting a card in the
reader is connecting; taking it away is disconnecting (pcscd notices within its 400 ms presence poll,
or at the next APDU). Every message in both directions is a 2-byte big-endian length and a payload.
From the reader, a 1-byte payload is a control code (0 power off, 1 power on, 2 reset, 4 get ATR: the
card answers with its ATR); anything longer is a command APDU, answered with `card.respond(apdu)`.

Latency: the card's socket sets TCP_NODELAY, and TCP_QUICKACK before every receive. Without the
quick ACK every APDU stalls about 40 ms (Nagle on one side against delayed ACK on the other); with
it a round trip through pcscd takes a fraction of a millisecond.

`VpcdCardServer` serves one card at a time from a background thread. A card that says it left the
field (an empty answer from `respond`, see drivers/sim/cards.py) is disconnected and stays out until
the next `insert`. When pcscd goes away while a card is inserted (a restart), the server reconnects
as soon as vpcd listens again: the card is still lying on the reader.

Run a card in its own process: `python -m drivers.sim.vpcd --profile visa [--port 35963]`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import socket
import struct
import sys
import threading
import time
from typing import ClassVar, Protocol

from drivers.base import ReaderUnavailableError

log = logging.getLogger("walletpos.sim.vpcd")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 0x8C7B  # 35963, the first slot of /etc/reader.conf.d/vpcd

CTRL_POWER_OFF = 0
CTRL_POWER_ON = 1
CTRL_RESET = 2
CTRL_GET_ATR = 4

_RECONNECT_INTERVAL = 0.05  # seconds between attempts while vpcd is away (pcscd restarting)
# pcscd asks vpcd whether a card is present every 400 ms; a removal is only noticed at that poll. A card
# inserted sooner after a removal would look to pcscd like the old card still lying there, so `insert`
# waits until one poll has seen the slot empty.
PRESENCE_POLL_GRACE = 0.5


class VirtualCardLike(Protocol):
    """What the server needs from a card (drivers.sim.cards.VirtualCard has it)."""

    name: str
    atr: bytes

    def reset(self) -> None: ...

    def respond(self, apdu: bytes) -> bytes: ...


class _Disconnected(Exception):
    """The TCP connection to vpcd ended (pcscd stopped, or we closed it)."""


def _quickack(sock: socket.socket) -> None:
    # Linux re-enables delayed ACKs after a while; set it again before each receive.
    if hasattr(socket, "TCP_QUICKACK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        _quickack(sock)
        try:
            chunk = sock.recv(size - len(chunks))
        except OSError as exc:
            raise _Disconnected(str(exc)) from exc
        if not chunk:
            raise _Disconnected("vpcd closed the connection")
        chunks += chunk
    return bytes(chunks)


def _send_message(sock: socket.socket, payload: bytes) -> None:
    try:
        sock.sendall(struct.pack(">H", len(payload)) + payload)
    except OSError as exc:
        raise _Disconnected(str(exc)) from exc


class VpcdCardServer:
    """Puts virtual cards into the vpcd reader of a running pcscd.

    >>> server = VpcdCardServer()
    >>> server.insert(make_card("visa"))   # pcscd sees a card in "Virtual PCD 00 00"
    >>> server.remove()                     # ... and sees it leave
    >>> server.close()
    """

    # When a card last left each (host, port), across server objects (see PRESENCE_POLL_GRACE).
    _removed_at: ClassVar[dict[tuple[str, int], float]] = {}

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, connect_timeout: float = 3.0) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.apdus_served = 0
        self._lock = threading.Lock()
        self._card: VirtualCardLike | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()

    # -- state ------------------------------------------------------------------------------------

    @property
    def card(self) -> VirtualCardLike | None:
        """The inserted card (None when the reader is empty)."""
        return self._card

    @property
    def connected(self) -> bool:
        """True while the card is connected to vpcd (pcscd can see it)."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the inserted card is connected to vpcd again (after a pcscd restart)."""
        return self._connected.wait(timeout)

    # -- what the simulated customer does ---------------------------------------------------------

    def insert(self, card: VirtualCardLike) -> None:
        """Put `card` in the reader: connect to vpcd and serve it from a background thread.
        Raises ReaderUnavailableError when vpcd does not accept a connection within
        `connect_timeout` (pcscd not running, or no vpcd reader configured on this port)."""
        self.remove()
        pause = self._removed_at.get((self.host, self.port), float("-inf")) + PRESENCE_POLL_GRACE - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        self._stop.clear()
        sock = self._connect(deadline=time.monotonic() + self.connect_timeout)
        if sock is None:
            raise ReaderUnavailableError(
                f"vpcd does not accept a card on {self.host}:{self.port}: is pcscd running with the vpcd reader "
                "(/etc/reader.conf.d/vpcd)?")
        with self._lock:
            self._card, self._sock = card, sock
        self._connected.set()
        self._thread = threading.Thread(target=self._serve, args=(card,), name=f"vpcd-card-{self.port}", daemon=True)
        self._thread.start()
        log.info("card %s inserted into vpcd %s:%d", card.name, self.host, self.port)

    def remove(self) -> None:
        """Take the card out of the reader (disconnect); idempotent."""
        self._stop.set()
        with self._lock:
            sock, self._sock = self._sock, None
            card, self._card = self._card, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        self._connected.clear()
        if card is not None:
            self._removed_at[(self.host, self.port)] = time.monotonic()
            log.info("card %s removed from vpcd %s:%d", card.name, self.host, self.port)

    def close(self) -> None:
        self.remove()

    def __enter__(self) -> VpcdCardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the connection ---------------------------------------------------------------------------

    def _connect(self, deadline: float) -> socket.socket | None:
        """A socket connected to vpcd, trying until `deadline`; None if vpcd never accepted."""
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=1.0)
            except OSError as exc:
                if time.monotonic() >= deadline or self._stop.is_set():
                    log.debug("vpcd %s:%d not reachable: %s", self.host, self.port, exc)
                    return None
                time.sleep(_RECONNECT_INTERVAL)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _quickack(sock)
            return sock

    def _serve(self, card: VirtualCardLike) -> None:
        while not self._stop.is_set():
            with self._lock:
                sock = self._sock
            if sock is None:
                return
            try:
                self._serve_connection(sock, card)
            except _Disconnected as exc:
                log.debug("vpcd connection ended: %s", exc)
            self._connected.clear()
            if self._stop.is_set():
                return
            if getattr(card, "removed", False):
                self._removed_at[(self.host, self.port)] = time.monotonic()
                log.info("card %s left the field; disconnected from vpcd", card.name)
                with self._lock:
                    if self._sock is sock:
                        self._sock = None
                sock.close()
                return
            # vpcd went away (pcscd stopped or restarted) while the card lies on the reader:
            # connect again as soon as it listens.
            sock.close()
            new = None
            while new is None and not self._stop.is_set():
                new = self._connect(deadline=time.monotonic() + 1.0)
            with self._lock:
                if self._stop.is_set() or new is None:
                    if new is not None:
                        new.close()
                    return
                self._sock = new
            self._connected.set()
            log.info("card %s reconnected to vpcd %s:%d", card.name, self.host, self.port)

    def _serve_connection(self, sock: socket.socket, card: VirtualCardLike) -> None:
        while not self._stop.is_set():
            (size,) = struct.unpack(">H", _recv_exact(sock, 2))
            message = _recv_exact(sock, size) if size else b""
            if len(message) == 1:
                code = message[0]
                if code == CTRL_GET_ATR:
                    _send_message(sock, bytes(card.atr))
                elif code in (CTRL_POWER_ON, CTRL_RESET):
                    card.reset()
                elif code == CTRL_POWER_OFF:
                    pass
                else:
                    log.warning("vpcd sent unknown control code %d; ignored", code)
                continue
            if not message:
                continue
            response = card.respond(message)
            self.apdus_served += 1
            if not response:
                # The card left the field: vanish without an answer, as a real card would.
                raise _Disconnected("card left the field")
            _send_message(sock, bytes(response))


def _load_card(profile: str) -> VirtualCardLike:
    from drivers.sim.cards import make_card

    return make_card(profile)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drivers.sim.vpcd",
                                     description="Serve a virtual card to pcscd's vpcd reader until interrupted.")
    parser.add_argument("--profile", default="visa", help="card profile from drivers.sim.cards (default visa)")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"vpcd port (default {DEFAULT_PORT})")
    parser.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for vpcd")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    card = _load_card(args.profile)
    server = VpcdCardServer(args.host, args.port, connect_timeout=args.connect_timeout)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        server.insert(card)
    except ReaderUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"card {card.name} in vpcd {args.host}:{args.port}; Ctrl-C to remove it", flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
