"""The worker side of the report channel: a trial's values go to the agent in batches, in order.

A trial running in a Ray worker connects straight to its agent's
:class:`~sweeper.engine.report_server.ReportServer` (a TCP connection of the standard library's
:mod:`multiprocessing.connection`, authenticated with the agent run's key), one leg each way: a
call through a Ray actor took two legs and the agent's drain of the actor each way, 30-40 ms at
the median with 32 trials on 2 cores, against under a millisecond for the socket (BENCHMARKS.md,
section 2). ``report`` only buffers the value and returns: a sender thread keeps one call in
flight, carrying every value buffered since the previous call, and takes the pruner's answer back
(:meth:`ChannelReporter.stopped`, which the trial checks at each report). The buffer is bounded:
when it is full, ``report`` waits for the call in flight, so a trainer that logs faster than the
agent takes its values runs at the agent's pace, with flat memory, however many times it logs.
:meth:`ChannelReporter.close` flushes what is buffered at the trial's end and hands back whatever
the channel could not deliver, to ride in the trial's outcome.

A module of its own, importing neither Optuna nor NumPy: every Ray worker that runs a trial imports
it (a quarter of a second of a fresh worker's first trial when it imported Optuna). The messages:
``("report", [Batch, ...])``, answered with the ids of the trials the pruner stops, and
``("started", trial_id)``, not answered.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge

from sweeper.errors import UsageError

_logger = logging.getLogger(__name__)

MAX_BUFFERED = 10_000
"""Values a trial may have buffered while a call is in flight; beyond, ``report`` waits for it."""
CLOSE_TIMEOUT_S = 30.0
"""How long a trial's end waits for the agent to take its last values (the rest ride in its outcome)."""
_SLOW_AGENT_S = 30.0
PORTS_ENV = "SWEEPER_AGENT_PORTS"
"""The ports an agent run may listen on (``40100`` or ``40100-40199``), one free port each: a
cluster whose nodes reach each other on chosen ports only opens these. Unset: any free port."""
HANDSHAKE_TIMEOUT_S = 10.0
"""How long a connect and its key check may take, on either end: a port a firewall drops packets
for would otherwise hold a trial's reporter for the system's connect timeout (minutes)."""


@dataclass(frozen=True)
class Batch:
    """A trial's values reported since its previous batch, in the order reported."""

    trial_id: int
    steps: list[int]
    values: list[float]
    wants_decision: bool = True


@dataclass(frozen=True)
class ChannelAddress:
    """Where an agent run's :class:`~sweeper.engine.report_server.ReportServer` listens, and its key."""

    host: str
    port: int
    authkey: bytes

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"ChannelAddress({self.host!r}, {self.port})"


class ChannelReporter:
    """What a trial running in a Ray task reports through: buffered, batched, one call in flight.

    Args:
        address: The agent run's report server.
        wants_decisions: Whether the pruner can stop a trial (if not, the agent only stores values).
        max_buffered: The bound on buffered values (see :data:`MAX_BUFFERED`).
        close_timeout: See :data:`CLOSE_TIMEOUT_S`.
        connection: A connection to the server already made (a lane's), used instead of a new one
            and left open: a trial on a lane pays no connect and key check of its own.
    """

    def __init__(
        self,
        address: ChannelAddress,
        wants_decisions: bool,
        *,
        max_buffered: int = MAX_BUFFERED,
        close_timeout: float = CLOSE_TIMEOUT_S,
        connection: Connection | None = None,
    ) -> None:
        self._address = address
        self._wants = wants_decisions
        self._max = max_buffered
        self._close_timeout = close_timeout
        self._cond = threading.Condition(threading.Lock())
        self._buffer: dict[int, tuple[list[int], list[float]]] = {}  # trial id -> steps, values
        self._buffered = 0
        self._sending: dict[int, tuple[list[int], list[float]]] = {}  # the call in flight
        self._stops: dict[int, tuple[int, float]] = {}  # trial id -> the report the pruner stopped it at
        self._broken: str | None = None  # why the channel failed: values then stay here
        self._closing = False
        self._gave_up = False  # the trial ended without the agent taking its last call
        self._idle = False  # the sender waits for values
        self._thread: threading.Thread | None = None
        self._connection: Connection | None = connection
        self._owned = connection is None  # made here, so closed here
        self._connect_error: Exception | None = None
        self._connect_lock = threading.Lock()  # one connection, made by whoever needs it first
        self._send_lock = threading.Lock()  # the sender's calls and the trial's start notice

    @property
    def broken(self) -> str | None:
        """Why the channel failed (its values then ride in the trial's outcome), or None."""
        return self._broken

    @property
    def reusable(self) -> bool:
        """After :meth:`close`: whether the connection is as it was given, no call in flight and no
        answer still to come, so that its owner may go on using it."""
        thread = self._thread
        return self._broken is None and not self._gave_up and (thread is None or not thread.is_alive())

    def report(self, trial_id: int, step: int, value: float) -> bool:
        """Buffer the value for the next call; wait for the call in flight if the buffer is full.

        Returns False: a decision arrives later, through :meth:`stopped`.
        """
        with self._cond:
            if self._buffered >= self._max and self._broken is None:
                self._wait_for_room()
            steps, values = self._buffer.get(trial_id) or self._buffer.setdefault(trial_id, ([], []))
            steps.append(step)
            values.append(value)
            self._buffered += 1
            if self._thread is None and self._broken is None:
                self._thread = threading.Thread(target=self._send, name="sweeper-reports", daemon=True)
                self._thread.start()
            elif self._idle:
                self._cond.notify_all()
        return False

    def stopped(self, trial_id: int) -> tuple[int, float] | None:
        """``(step, value)`` of the report the pruner stopped the trial at, once its answer arrived."""
        return self._stops.get(trial_id)

    def settle(self, trial_id: int, timeout: float) -> None:
        """Wait until the agent has answered every report so far (what is buffered goes with the next
        call), or ``timeout`` seconds, or the channel failed."""
        with self._cond:
            self._wait_answered(timeout)

    def started(self, trial_id: int) -> None:
        """Tell the agent the trainer starts now (its timeout counts from here); never raises."""
        try:
            connection = self._connect()
            with self._send_lock:
                connection.send(("started", trial_id))
        except Exception as exc:  # the timeout then counts from the trial's submission
            _logger.warning("could not tell the agent trial %d started (%s)", trial_id, exc)

    def close(self, trial_id: int) -> list[tuple[int, float]]:
        """The trial ends: send what is buffered, wait (bounded) for the agent to take it, and return
        the ``(step, value)`` pairs it did not take, in order (they ride in the trial's outcome).

        The reporter serves one run of a trial: nothing is reported after this.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            if not self._wait_answered(self._close_timeout):
                self._gave_up = True
                _logger.warning(
                    "trial %d: the agent took none of its last reports for %g s; they go with its end",
                    trial_id,
                    self._close_timeout,
                )
            kept: list[tuple[int, float]] = []
            for held in (self._sending, self._buffer):  # the call in flight holds the older values
                steps, values = held.get(trial_id, ([], []))
                kept.extend(zip(steps, values, strict=True))
            self._buffer, self._buffered = {}, 0
            thread = self._thread
        if thread is not None and not self._gave_up:
            thread.join(timeout=1.0)
        if self._owned and (thread is None or not thread.is_alive()):
            with self._connect_lock:
                if self._connection is not None:
                    self._connection.close()
        return kept

    def _wait_answered(self, timeout: float) -> bool:
        """With the lock held: wait until every report so far is answered or the channel failed (True),
        or ``timeout`` seconds passed first (False)."""
        deadline = time.monotonic() + timeout
        while (self._buffered or self._sending) and self._broken is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._cond.wait(left)
        return True

    def _connect(self) -> Connection:
        """The connection to the agent, made once; a failed attempt is not made again (it could cost
        the trial :data:`HANDSHAKE_TIMEOUT_S` each time)."""
        with self._connect_lock:
            if self._connect_error is not None:
                raise self._connect_error
            if self._connection is None:
                try:
                    self._connection = connect(self._address)
                except Exception as exc:
                    self._connect_error = exc
                    raise
            return self._connection

    def _wait_for_room(self) -> None:
        """Backpressure: wait until the sender takes the buffer (when the call in flight returns)."""
        waited = 0.0
        while self._buffered >= self._max and self._broken is None:
            if not self._cond.wait(_SLOW_AGENT_S):
                waited += _SLOW_AGENT_S
                _logger.warning("the agent took none of this trial's reports for %g s; waiting", waited)

    def _send(self) -> None:
        """Sender thread: one call at a time, each with everything buffered since the last one."""
        while True:
            with self._cond:
                while not self._buffered and not self._closing:
                    self._idle = True
                    self._cond.wait()
                self._idle = False
                if not self._buffered:
                    return  # closing, and everything was taken
                sending, self._buffer, self._buffered = self._buffer, {}, 0
                self._sending = sending
                self._cond.notify_all()  # room in the buffer again
            batches = [Batch(tid, steps, values, self._wants) for tid, (steps, values) in sending.items()]
            try:
                stopped = self._call(batches)
            except Exception as exc:  # the agent is gone or unreachable: keep the values here
                with self._cond:
                    self._broken = f"{type(exc).__name__}: {exc}"
                    for tid, (steps, values) in self._buffer.items():  # after the call's, in order
                        sending.setdefault(tid, ([], []))
                        sending[tid][0].extend(steps)
                        sending[tid][1].extend(values)
                    self._buffer, self._sending = sending, {}
                    self._buffered = sum(len(steps) for steps, _ in sending.values())
                    self._cond.notify_all()
                _logger.warning(
                    "reports could not reach the agent at %s:%d (%s); they go with the trial's end",
                    self._address.host,
                    self._address.port,
                    self._broken,
                )
                return
            with self._cond:
                for tid in stopped:
                    steps, values = sending[tid]
                    self._stops.setdefault(tid, (steps[-1], values[-1]))
                self._sending = {}
                self._cond.notify_all()

    def _call(self, batches: list[Batch]) -> list[int]:
        """One call to the agent: the trials it stops. Waits as long as the agent takes, unless
        the trial ended meanwhile (its values then went with its end)."""
        connection = self._connect()
        with self._send_lock:
            connection.send(("report", batches))
        began = warned = time.monotonic()
        while not connection.poll(1.0):
            if self._gave_up:
                return []
            if time.monotonic() - warned >= _SLOW_AGENT_S:
                warned = time.monotonic()
                _logger.warning(
                    "the agent has not taken this trial's reports for %.0f s; waiting", warned - began
                )
        stopped: list[int] = connection.recv()
        return stopped


def connect(address: ChannelAddress) -> Connection:
    """A connection to the agent run's report server at ``address``, its key checked; the connect and
    the check bounded by :data:`HANDSHAKE_TIMEOUT_S`. Raises what :func:`handshake` raises, or
    ``OSError`` for a connect refused or timed out."""
    sock = socket.create_connection((address.host, address.port), timeout=HANDSHAKE_TIMEOUT_S)
    return handshake(sock, address.authkey, accepting=False)


def handshake(sock: socket.socket, authkey: bytes, *, accepting: bool) -> Connection:
    """A :class:`~multiprocessing.connection.Connection` over ``sock`` once both ends proved they hold
    ``authkey``: what ``multiprocessing.connection``'s ``Client`` and ``Listener.accept`` do, with the
    exchange bounded by :data:`HANDSHAKE_TIMEOUT_S` (theirs waits forever).

    Raises ``multiprocessing.AuthenticationError`` for a wrong key, ``OSError`` or ``EOFError`` for
    a peer that went away or stalled; ``sock`` is closed then.
    """
    # The connection reads and writes the descriptor itself, so the bound is the kernel's (a
    # blocking socket whose reads and writes give up), not the socket object's timeout.
    sock.setblocking(True)
    _bound(sock, HANDSHAKE_TIMEOUT_S)
    # Every message is one write, most of them answered: Nagle's algorithm only held back a message
    # sent right after another (a lane's join after the key check, a report after a start notice)
    # until the peer's delayed ACK, about 40 ms on Linux.
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection = Connection(sock.detach())
    try:
        if accepting:  # the listener's order of the two challenges, as Listener.accept makes it
            deliver_challenge(connection, authkey)
            answer_challenge(connection, authkey)
        else:
            answer_challenge(connection, authkey)
            deliver_challenge(connection, authkey)
        unbound = socket.socket(fileno=connection.fileno())
        _bound(unbound, 0.0)
        unbound.detach()
    except BaseException:
        connection.close()
        raise
    return connection


def _bound(sock: socket.socket, seconds: float) -> None:
    """Make the kernel give up a read or write of ``sock`` after ``seconds`` (0: never)."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def allowed_ports(value: str | None) -> range:
    """The ports :data:`PORTS_ENV` allows: ``None`` or empty -> port 0 (any free one).

    Example:
        >>> allowed_ports("40100-40102"), allowed_ports("40100"), allowed_ports(None)
        (range(40100, 40103), range(40100, 40101), range(0, 1))

    Raises:
        UsageError: not a port or a range ``LOW-HIGH`` of ports within 1-65535.
    """
    if not value or not value.strip():
        return range(0, 1)
    low, dash, high = value.strip().partition("-")
    try:
        first, last = int(low), int(high if dash else low)
    except ValueError:
        first, last = 0, -1
    if not 1 <= first <= last <= 65535:
        raise UsageError(
            f"{PORTS_ENV} must be a port or a range LOW-HIGH within 1-65535 (40100-40199), got {value!r}"
        )
    return range(first, last + 1)
