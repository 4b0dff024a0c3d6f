"""The agent's end of the report channel: trials connect to it, send their values, get decisions back.

Each agent run on Ray listens on a port of its own node, with a key of its own
(:class:`~sweeper.engine.report_channel.ChannelAddress`, handed to every trial it starts). A
trial's :class:`~sweeper.engine.report_channel.ChannelReporter` connects once and keeps one call in
flight. One thread serves every connection: it takes the calls that arrived together, hands their
batches to the :class:`~sweeper.engine.judge.PruningJudge` at once (one read of the study serves
them all), answers each call with the trials it stops, and asks the
:class:`~sweeper.engine.judge.Persister` to store the values. A call is answered only once the judge
took its batch, so a trial that logs faster than the agent decides waits for it (see the reporter)
rather than piling values up anywhere. The run's lanes (:mod:`sweeper.engine.lanes`) connect here
too: the same thread hands their messages to the :class:`~sweeper.engine.lanes.LanePool`.

The connection is the standard library's :mod:`multiprocessing.connection` (pickled messages, the
key checked by an HMAC challenge before anything is read), so the cluster's nodes must reach the
agent's node on any port, as Ray's own processes do; the network is trusted as Ray trusts it. A trial
that cannot connect keeps its values and they ride in its outcome: stored, never pruned.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection, Pipe, wait
from typing import Any

from sweeper.engine.judge import Persister, PruningJudge
from sweeper.engine.lanes import LanePool
from sweeper.engine.report_channel import PORTS_ENV, Batch, ChannelAddress, allowed_ports, handshake
from sweeper.errors import UsageError

_logger = logging.getLogger(__name__)

_POLL_S = 1.0  # the serving thread's wait, so that it sees a close even without a wake


class ReportServer:
    """Serves one agent run's trials: their values in, the pruner's decisions out.

    Args:
        judge: Decides on the values and stores them (through a :class:`Persister` of its own).
        on_started: Receives the ids of trials whose trainers start now (their timeouts count from then).
        host: The address to listen on and hand the trials: the agent's node as the cluster reaches it.
        lanes: The agent run's lanes, which join here to take their trials (see :mod:`sweeper.engine.lanes`).
    """

    def __init__(
        self,
        judge: PruningJudge,
        on_started: Callable[[list[int]], None] | None = None,
        host: str = "127.0.0.1",
        lanes: LanePool | None = None,
    ) -> None:
        self._judge = judge
        self._lanes = lanes
        self._persister = Persister(judge)
        self._on_started = on_started
        self._authkey = secrets.token_bytes(32)
        # A backlog of 1 (the standard library's Listener) drops the connects of trials that
        # start together, and TCP retries a dropped connect a second or more later.
        self._listener = _listen(host)
        self.address = ChannelAddress(host, int(self._listener.getsockname()[1]), self._authkey)
        self._wake_r, self._wake_w = Pipe(duplex=False)
        self._lock = threading.Lock()
        self._connections: list[Connection] = []
        self._closing = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="sweeper-report-accept", daemon=True)
        self._server = threading.Thread(target=self._serve, name="sweeper-report-serve", daemon=True)
        self._acceptor.start()
        self._server.start()

    def close(self) -> None:
        """Stop serving (after the calls being answered), then store what is left.

        Trials still connected see the connection end: what they still hold rides in their outcomes.
        """
        self._closing.set()
        with contextlib.suppress(OSError):  # an accept waiting for a connection returns on this one
            socket.create_connection(_reachable(self._listener), timeout=1.0).close()
        with contextlib.suppress(OSError):
            self._wake_w.send_bytes(b"")
        self._acceptor.join(timeout=5.0)
        self._server.join(timeout=5.0)
        self._listener.close()
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._wake_r.close()
        self._wake_w.close()
        self._persister.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                sock, peer = self._listener.accept()
            except OSError:  # closed
                return
            if self._closing.is_set():
                sock.close()
                return
            # The key check on a thread of its own: a peer that stalls in it holds up no other trial.
            threading.Thread(
                target=self._admit, args=(sock, peer[0]), name="sweeper-report-admit", daemon=True
            ).start()

    def _admit(self, sock: socket.socket, peer: str) -> None:
        try:
            connection = handshake(sock, self._authkey, accepting=True)
        except Exception as exc:  # a wrong key, or a peer that hung up or stalled in the check
            _logger.warning("refused a connection to the report channel from %s: %r", peer, exc)
            return
        with self._lock:
            if self._closing.is_set():
                connection.close()
                return
            self._connections.append(connection)
        with contextlib.suppress(OSError):
            self._wake_w.send_bytes(b"")  # the serving thread waits on the new one too

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                self._serve_once()
            except Exception:  # never leave the trials without answers for a bug's sake
                _logger.exception("serving the trials' reports failed; serving on")

    def _serve_once(self) -> None:
        with self._lock:
            connections = list(self._connections)
        ready = wait([self._wake_r, *connections], timeout=_POLL_S)
        calls: list[tuple[Connection, list[Batch]]] = []
        started: list[int] = []
        for connection in ready:
            if connection is self._wake_r:
                while self._wake_r.poll():
                    self._wake_r.recv_bytes()
                continue
            assert isinstance(connection, Connection)
            try:
                while True:  # everything it sent so far: a start notice may precede a call
                    kind, body = connection.recv()
                    if kind == "report":
                        calls.append((connection, body))
                    elif kind == "started":
                        started.append(body)
                    elif self._lanes is not None:
                        self._lane_message(connection, kind, body)
                    if not connection.poll():
                        break
            except (EOFError, OSError):  # the trial ended (or its worker died)
                self._drop(connection)
        if started and self._on_started is not None:
            self._on_started(started)
        if calls:
            self._answer(calls)
            self._persister.request()  # written on its thread: the next call waits on no write

    def _lane_message(self, connection: Connection, kind: str, body: Any) -> None:
        assert self._lanes is not None
        if kind == "lane":
            self._lanes.joined(body, connection)
        elif kind == "ended":
            self._lanes.handed_back(*body)
        elif kind == "leaving":
            self._lanes.leaving(body, connection)

    def _answer(self, calls: list[tuple[Connection, list[Batch]]]) -> None:
        """Decide on the calls' batches together and answer every call, whatever happens."""
        stopped: set[int] = set()
        try:
            stopped = self._judge.decide_batches([each for _, batches in calls for each in batches])
        finally:  # a call left unanswered would hold its trial's reports until the trial ends
            for connection, batches in calls:
                try:
                    connection.send([b.trial_id for b in batches if b.trial_id in stopped])
                except OSError:
                    self._drop(connection)

    def _drop(self, connection: Any) -> None:
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)
        connection.close()


def _listen(host: str) -> socket.socket:
    """A listening socket on ``host``, on the first free port :data:`PORTS_ENV` allows (any free port
    without it); on every interface when ``host`` is not one of this machine's own (an address
    translated on its way here), still reached as ``host``.

    Raises:
        UsageError: :data:`PORTS_ENV` is malformed, or every port it allows is taken.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ports = allowed_ports(os.environ.get(PORTS_ENV))
    for port in ports:
        for address in (host, ""):
            try:
                return socket.create_server((address, port), family=family, backlog=socket.SOMAXCONN)
            except OSError as exc:
                if port == 0 and address == "":
                    raise  # any free port on every interface: nothing else to try
                if exc.errno == errno.EADDRINUSE:
                    break  # the port is taken on this node: the next one
    raise UsageError(
        f"{PORTS_ENV}={os.environ.get(PORTS_ENV)}: every port it allows is taken on this node "
        f"({len(ports)} tried); widen the range, one port for each agent run on the node"
    )


def _reachable(listener: socket.socket) -> tuple[str, int]:
    """Where this process reaches ``listener``: its own address, or loopback for a wildcard one."""
    host, port = listener.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if listener.family == socket.AF_INET else "::1"
    return host, port
