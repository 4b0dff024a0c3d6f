"""The report channel: batched, one call in flight, bounded, every value in order; on a real local Ray
and, for its own rules, between threads of this process over a real connection."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import engine_trainers
import optuna
import pytest
from optuna.trial import FrozenTrial

from sweeper.engine import executor as executor_module
from sweeper.engine import report_channel, report_server
from sweeper.engine.executor import RayExecutor
from sweeper.engine.judge import PruningJudge
from sweeper.engine.report_channel import Batch, ChannelAddress, ChannelReporter
from sweeper.engine.report_server import ReportServer
from sweeper.errors import UsageError
from sweeper.spec.model import Resources
from sweeper.storage.urls import open_storage
from sweeper.worker.task import Failure, Objective, TrialOutcome, TrialTask

LOGS = 100_000


class RecordingPruner(optuna.pruners.BasePruner):
    """Notes what each of its calls saw of the trial; stops it once it has ``stop_at`` values."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.seen: list[tuple[int, int, int]] = []  # (values, lowest step, highest step) per call
        self.trial: FrozenTrial | None = None
        self.stopped_at: int | None = None  # the highest step when it first said stop

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        values = trial.intermediate_values
        self.seen.append((len(values), min(values), max(values)))
        self.trial = trial
        stop = self.stop_at is not None and len(values) >= self.stop_at
        if stop and self.stopped_at is None:
            self.stopped_at = max(values)
        return stop


def _task(trial: optuna.Trial, tmp_path: Path, config: dict[str, Any], **options: Any) -> TrialTask:
    """A task of ``trial`` (``engine_trainers.log_many`` unless ``options`` says otherwise)."""
    fields: dict[str, Any] = {"trainer": engine_trainers.log_many, **options}
    return TrialTask(
        sweep_id="abcdefgh",
        sweep_name="channel",
        trial_id=trial._trial_id,
        number=trial.number,
        params={},
        config=config,
        objectives=(Objective("loss"),),
        checkpoint_dir=str(tmp_path / "checkpoint"),
        sweep_dir=str(tmp_path / "sweep"),
        **fields,
    )


def _outcome(executor: RayExecutor, task: TrialTask, within_s: float = 240) -> TrialOutcome:
    """Start ``task`` on ``executor``, wait for its end, close the executor; the trial's outcome."""
    ended: list[tuple[TrialTask, TrialOutcome]] = []
    try:
        executor.start(task)
        deadline = time.monotonic() + within_s
        while not ended and time.monotonic() < deadline:
            ended = executor.wait(1.0)
    finally:
        executor.close()
    ((_, outcome),) = ended
    return outcome


def _run_on_ray(
    url: str, tmp_path: Path, pruner: optuna.pruners.BasePruner, config: dict[str, Any]
) -> tuple[TrialOutcome, dict[int, float]]:
    """One trial of ``engine_trainers.log_many`` through the Ray executor and its report channel.

    Returns its outcome and every value the agent holds for it: stored, taken by the judge but not
    stored yet, and carried by the outcome.
    """
    study = optuna.create_study(storage=open_storage(url))
    trial = study.ask()
    judge = PruningJudge(study, pruner)
    outcome = _outcome(RayExecutor(Resources(cpus=1), judge), _task(trial, tmp_path, config))
    judge.persist()
    stored = study._storage.get_trial(trial._trial_id).intermediate_values
    return outcome, {**stored, **judge.unstored(trial._trial_id), **dict(outcome.intermediate)}


@pytest.mark.ray
@pytest.mark.usefixtures("ray_trainers")
def test_a_trial_logging_100k_times_completes_with_flat_memory_and_the_pruner_saw_every_value_in_order(
    journal_url: str, tmp_path: Path
) -> None:
    pruner = RecordingPruner()
    out = tmp_path / "memory.json"
    outcome, values = _run_on_ray(journal_url, tmp_path, pruner, {"logs": LOGS, "out": str(out)})

    assert outcome.state == "complete", outcome.fail_reason
    assert values == {step: 1.0 / (step + 1) for step in range(LOGS)}
    # Each call of the pruner saw steps 0..n-1, every one of them (no value skipped or out of
    # order), more of them each time, and the last call saw all of them.
    assert all(low == 0 and high == count - 1 for count, low, high in pruner.seen), pruner.seen[:5]
    counts = [count for count, _, _ in pruner.seen]
    assert counts == sorted(set(counts)) and counts[-1] == LOGS
    assert pruner.trial is not None and pruner.trial.intermediate_values == values
    # Far fewer calls than reports: the reports travelled in batches.
    assert len(counts) < LOGS / 10
    # The worker's memory after a tenth of the logs and at the end: flat (the old channel kept
    # every value in the trial, and one pending Ray task per report).
    memory = json.loads(out.read_text())
    grown_mib = (memory["rss_end_kib"] - memory["rss_tenth_kib"]) / 1024
    assert grown_mib < 8, memory


@pytest.mark.ray
@pytest.mark.usefixtures("ray_trainers")
def test_the_pruners_stop_reaches_a_trial_that_logs_as_fast_as_it_can(
    journal_url: str, tmp_path: Path
) -> None:
    pruner = RecordingPruner(stop_at=500)
    out = tmp_path / "memory.json"
    outcome, values = _run_on_ray(journal_url, tmp_path, pruner, {"logs": 10 * LOGS, "out": str(out)})

    assert outcome.state == "pruned"
    assert not out.exists()  # the trainer never finished its loop
    last = max(values)
    # Every value it logged, up to the report that raised the stop, after the one stopped at.
    assert values == {step: 1.0 / (step + 1) for step in range(last + 1)}
    assert pruner.stopped_at is not None and 499 <= pruner.stopped_at < last < 10 * LOGS - 1


class ScriptedJudge:
    """The judge's part of the server's protocol, by hand: notes each call's batches, stops as told.

    Not a stand-in for the pruner's logic (``test_judge.py`` tests that): it lets a test see what the
    server hands the judge and decide what it answers.
    """

    def __init__(self, stop_first: bool = False, fail: bool = False) -> None:
        self.decided: list[list[Batch]] = []
        self.persisted = 0
        self.stop_first = stop_first
        self.fail = fail

    def decide_batches(self, batches: list[Batch]) -> set[int]:
        self.decided.append(list(batches))
        if self.fail:
            raise RuntimeError("a broken judge")
        if self.stop_first and len(self.decided) == 1:
            return {b.trial_id for b in batches}
        return set()

    def persist(self) -> None:
        self.persisted += 1


def _server(judge: ScriptedJudge, started: list[int] | None = None) -> ReportServer:
    return ReportServer(judge, started.extend if started is not None else None)  # type: ignore[arg-type]


def test_one_call_in_flight_bounded_batches_in_order_and_the_answer_names_the_report_stopped_at() -> None:
    judge = ScriptedJudge(stop_first=True)
    server = _server(judge)
    reporter = ChannelReporter(server.address, wants_decisions=True, max_buffered=100)
    try:
        for step in range(1_000):
            reporter.report(7, step, step / 10)
        assert reporter.close(7) == []  # everything was taken
    finally:
        server.close()

    calls = judge.decided
    assert all(len(batches) == 1 for batches in calls)  # one call in flight: one batch a decision
    received = [batch.values for (batch,) in calls]
    assert all(batch.trial_id == 7 and len(batch.values) <= 100 for (batch,) in calls)  # the bound
    assert [v for values in received for v in values] == [step / 10 for step in range(1_000)]
    assert len(received) >= 10  # 1,000 values through a buffer of 100: the trainer waited
    first = received[0]
    assert reporter.stopped(7) == (round(first[-1] * 10), first[-1])
    assert judge.persisted >= 1  # the server asked for the values to be stored


def test_trials_reporting_together_are_decided_together_and_each_gets_its_own_answer() -> None:
    judge = ScriptedJudge()
    server = _server(judge)
    reporters = {tid: ChannelReporter(server.address, wants_decisions=True) for tid in range(8)}
    try:
        threads = [
            threading.Thread(target=lambda t=tid, r=rep: [r.report(t, s, float(s)) for s in range(300)])
            for tid, rep in reporters.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(rep.close(tid) == [] for tid, rep in reporters.items())
    finally:
        server.close()

    by_trial: dict[int, list[float]] = {}
    for batches in judge.decided:
        for each in batches:
            by_trial.setdefault(each.trial_id, []).extend(each.values)
    assert by_trial == {tid: [float(s) for s in range(300)] for tid in range(8)}  # all, in order
    assert all(rep.stopped(tid) is None for tid, rep in reporters.items())


def test_the_trials_start_notices_reach_the_agent() -> None:
    started: list[int] = []
    server = _server(ScriptedJudge(), started)
    reporter = ChannelReporter(server.address, wants_decisions=True)
    try:
        reporter.started(5)
        reporter.report(5, 0, 1.0)  # a call after the notice, on the same connection
        assert reporter.close(5) == []
    finally:
        server.close()
    assert started == [5]


def test_both_ends_of_a_connection_send_each_message_at_once() -> None:
    # With Nagle's algorithm a message sent right after another (a lane's join after the key
    # check's last message, a report after a start notice) waited for the peer's delayed ACK.
    server = _server(ScriptedJudge(), [])
    connection = report_channel.connect(server.address)
    try:
        deadline = time.monotonic() + 10
        while not server._connections and time.monotonic() < deadline:
            time.sleep(0.01)
        ends = [connection, *server._connections]
        assert len(ends) == 2
        for end in ends:
            sock = socket.socket(fileno=os.dup(end.fileno()))
            try:
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            finally:
                sock.close()
    finally:
        connection.close()
        server.close()


def test_a_reporter_given_a_lanes_connection_leaves_it_open_and_says_whether_it_can_carry_on() -> None:
    started: list[int] = []
    server = _server(ScriptedJudge(stop_first=True), started)
    connection = report_channel.connect(server.address)
    stops = []
    try:
        for trial_id in (1, 2):  # two trials one after the other on one connection, as on a lane
            reporter = ChannelReporter(server.address, wants_decisions=True, connection=connection)
            reporter.started(trial_id)
            for step in range(50):
                reporter.report(trial_id, step, 0.5)
            assert reporter.close(trial_id) == []
            assert reporter.reusable and not connection.closed
            stops.append(reporter.stopped(trial_id))
        assert started == [1, 2]
        assert stops[0] is not None and stops[1] is None  # each answer reached its own trial
    finally:
        connection.close()
        server.close()


def test_a_reporter_that_gave_up_on_its_answer_leaves_the_connection_to_no_one() -> None:
    release = threading.Event()

    class StalledJudge(ScriptedJudge):
        def decide_batches(self, batches: list[Batch]) -> set[int]:
            release.wait(30)
            return set()

    server = _server(StalledJudge())
    connection = report_channel.connect(server.address)
    reporter = ChannelReporter(server.address, True, close_timeout=0.5, connection=connection)
    try:
        reporter.report(4, 0, 0.5)
        assert reporter.close(4) == [(0, 0.5)]  # the value goes with the trial's end
        # Its answer may still come over the connection: a lane must not read its next trial there.
        assert not reporter.reusable and not connection.closed
        time.sleep(1.5)  # its sender has stopped waiting by now (it looks every second); still not
        assert not reporter.reusable
    finally:
        release.set()
        connection.close()
        server.close()


def test_when_the_agent_is_gone_the_values_stay_with_the_trial_in_order() -> None:
    server = _server(ScriptedJudge())
    address = server.address
    server.close()
    reporter = ChannelReporter(address, wants_decisions=True, max_buffered=100)
    reporter.started(3)  # never raises: the timeout then counts from the submission
    for step in range(1_000):  # never waits: a dead channel keeps what it is given
        reporter.report(3, step, float(step))

    assert reporter.close(3) == [(step, float(step)) for step in range(1_000)]
    assert reporter.stopped(3) is None
    assert reporter.broken is not None


def test_a_trial_without_the_runs_key_is_refused_and_the_others_are_served() -> None:
    judge = ScriptedJudge()
    server = _server(judge)
    stranger = ChannelReporter(ChannelAddress(server.address.host, server.address.port, b"not the key"), True)
    reporter = ChannelReporter(server.address, wants_decisions=True)
    try:
        for step in range(50):
            stranger.report(1, step, 0.5)
        assert stranger.close(1) == [(step, 0.5) for step in range(50)]  # kept: they ride in its end
        assert stranger.broken is not None and "AuthenticationError" in stranger.broken
        for step in range(50):
            reporter.report(2, step, 0.25)
        assert reporter.close(2) == []
    finally:
        server.close()
    assert {each.trial_id for batches in judge.decided for each in batches} == {2}
    assert "not the key" not in repr(stranger._address)  # the key stays out of logs


def test_a_judge_that_raises_still_answers_every_call_and_the_server_serves_on() -> None:
    judge = ScriptedJudge(fail=True)
    server = _server(judge)
    reporter = ChannelReporter(server.address, wants_decisions=True, max_buffered=10)
    try:
        for step in range(100):  # each full buffer waits for an answer: none may be missing
            reporter.report(4, step, 1.0)
        assert reporter.close(4) == []
    finally:
        server.close()
    assert sum(len(b.values) for batches in judge.decided for b in batches) == 100
    assert reporter.stopped(4) is None


def test_an_agent_closing_mid_call_leaves_the_values_with_the_trial() -> None:
    """The agent stops while a trial's call waits for its decision: that call's values are not lost."""
    release = threading.Event()

    class SlowJudge(ScriptedJudge):
        def decide_batches(self, batches: list[Batch]) -> set[int]:
            release.wait(30)
            raise RuntimeError("closing")

    server = _server(SlowJudge())
    reporter = ChannelReporter(server.address, wants_decisions=True, close_timeout=2.0)
    reporter.report(9, 0, 0.5)
    time.sleep(0.5)  # the call is with the judge
    closer = threading.Thread(target=server.close)
    closer.start()
    reporter.report(9, 1, 0.4)
    release.set()
    closer.join(30)
    kept = reporter.close(9)
    # Either the call was answered before the connection ended (its value taken) or it is kept:
    # the later value is never lost.
    assert kept in ([(1, 0.4)], [(0, 0.5), (1, 0.4)])


def test_a_peer_stalling_in_the_key_check_is_dropped_and_the_trials_after_it_are_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report_channel, "HANDSHAKE_TIMEOUT_S", 0.5)
    judge = ScriptedJudge()
    server = _server(judge)
    stalled = socket.create_connection((server.address.host, server.address.port))  # says nothing
    reporter = ChannelReporter(server.address, wants_decisions=True, close_timeout=10.0)
    try:
        for step in range(20):
            reporter.report(6, step, 0.5)
        assert reporter.close(6) == []  # served once the stalled peer's 0.5 s ran out
    finally:
        stalled.close()
        server.close()
    assert [v for batches in judge.decided for b in batches for v in b.values] == [0.5] * 20


def test_a_reporter_facing_a_port_that_never_answers_gives_up_and_keeps_its_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A firewall that drops packets, or anything else on the port: bounded, never hanging the trial."""
    monkeypatch.setattr(report_channel, "HANDSHAKE_TIMEOUT_S", 0.5)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (the kernel's), never speaks
        port = silent.getsockname()[1]
        reporter = ChannelReporter(ChannelAddress("127.0.0.1", port, b"key"), True, close_timeout=10.0)
        began = time.monotonic()
        reporter.started(8)  # bounded too: the trainer waits at most the handshake's bound
        for step in range(30):
            reporter.report(8, step, 1.0)
        kept = reporter.close(8)
    assert kept == [(step, 1.0) for step in range(30)]
    assert reporter.broken is not None
    assert time.monotonic() - began < 5.0


@pytest.mark.ray
@pytest.mark.usefixtures("ray_trainers")
def test_a_trial_that_cannot_reach_the_agent_stores_its_values_at_its_end_and_the_agent_says_why(
    journal_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = optuna.create_study(storage=open_storage(journal_url))
    trial = study.ask()
    pruner = RecordingPruner(stop_at=1)

    # What the lanes and trials on a node that cannot pass the key check see (as one behind a
    # firewall would see a refused or silent port): the channel fails, the trial goes on.
    def wrong_key(host: str, port: int, _key: bytes) -> ChannelAddress:
        return ChannelAddress(host, port, b"not the run's key")

    monkeypatch.setattr(report_server, "ChannelAddress", wrong_key)
    executor = RayExecutor(Resources(cpus=1), PruningJudge(study, pruner))
    real = executor._server.address
    task = _task(trial, tmp_path, {"logs": 50, "out": str(tmp_path / "memory.json")})
    with caplog.at_level("WARNING", logger="sweeper.engine.executor"):
        outcome = _outcome(executor, task)
    assert outcome.state == "complete"  # never stopped: the pruner never saw a value
    assert pruner.seen == []
    assert dict(outcome.intermediate) == {step: 1.0 / (step + 1) for step in range(50)}
    assert outcome.channel_error is not None and "AuthenticationError" in outcome.channel_error
    warnings = [r.getMessage() for r in caplog.records if "could not report to this agent" in r.getMessage()]
    assert len(warnings) == 1 and f"{real.host}:{real.port}" in warnings[0]
    assert not executor._lanes.joins  # later lanes run one trial each, without trying to join


def test_a_host_address_this_machine_does_not_own_is_still_served_on_every_interface() -> None:
    """A node reached at a translated address (203.0.113.7 here, a documentation address): the
    server cannot bind it, listens everywhere, and hands the trials the address they reach it at."""
    judge = ScriptedJudge()
    server = ReportServer(judge, host="203.0.113.7")  # type: ignore[arg-type]
    try:
        assert server.address.host == "203.0.113.7"
        here = ChannelAddress("127.0.0.1", server.address.port, server.address.authkey)
        reporter = ChannelReporter(here, wants_decisions=True)
        reporter.report(1, 0, 0.5)
        assert reporter.close(1) == []
    finally:
        server.close()
    assert [b.values for batches in judge.decided for b in batches] == [[0.5]]


def test_agents_listen_on_the_ports_the_cluster_opens_one_port_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """``SWEEPER_AGENT_PORTS``: each agent run on the node takes the next free port of the range;
    when none is left, a user error names the setting."""
    first = _two_free_ports()
    monkeypatch.setenv(report_channel.PORTS_ENV, f"{first}-{first + 1}")
    servers: list[ReportServer] = []
    try:
        for _ in range(2):
            servers.append(ReportServer(ScriptedJudge()))  # type: ignore[arg-type]
        assert sorted(s.address.port for s in servers) == [first, first + 1]
        taken = rf"SWEEPER_AGENT_PORTS={first}-{first + 1}: every port .* taken"
        with pytest.raises(UsageError, match=taken):
            ReportServer(ScriptedJudge())  # type: ignore[arg-type]
        # A trial reaches the agent on its port.
        reporter = ChannelReporter(servers[0].address, wants_decisions=True)
        reporter.report(1, 0, 0.5)
        assert reporter.close(1) == []
    finally:
        for server in servers:
            server.close()


@pytest.mark.parametrize("value", ["port", "0", "70000", "40200-40100", "40100-", "-5"])
def test_a_malformed_port_setting_is_a_user_error_that_says_the_form(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(report_channel.PORTS_ENV, value)
    form = r"SWEEPER_AGENT_PORTS must be a port or a range LOW-HIGH within 1-65535"
    with pytest.raises(UsageError, match=form):
        ReportServer(ScriptedJudge())  # type: ignore[arg-type]


def _two_free_ports() -> int:
    """A port that is free on this machine with the one after it (asked of the system, then checked)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("", 0))
            first = int(probe.getsockname()[1])
        if first >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("", first))
                b.bind(("", first + 1))
        except OSError:
            continue
        return first


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_trials_that_fit_no_node_are_a_user_error_that_says_what_they_need(journal_url: str) -> None:
    study = optuna.create_study(storage=open_storage(journal_url))
    with pytest.raises(UsageError, match=r"no node of the Ray cluster can run a trial: each needs .*GPU=100"):
        RayExecutor(Resources(gpus=100), PruningJudge(study, optuna.pruners.NopPruner()))


@pytest.mark.ray
@pytest.mark.usefixtures("ray_trainers")
def test_a_hung_trial_whose_start_notice_cannot_reach_the_agent_still_times_out(
    journal_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its timeout is counted from its submission once no notice came for START_NOTICE_WAIT_S."""
    monkeypatch.setattr(executor_module, "START_NOTICE_WAIT_S", 2.0)
    study = optuna.create_study(storage=open_storage(journal_url))
    trial = study.ask()
    executor = RayExecutor(Resources(cpus=1), PruningJudge(study, optuna.pruners.NopPruner()))
    real = executor._server.address
    executor._server.address = ChannelAddress(real.host, real.port, b"not the run's key")
    task = _task(trial, tmp_path, {"mode": "sleep"}, trainer=engine_trainers.misbehave, timeout=1.0)  # 120 s
    began = time.monotonic()
    outcome = _outcome(executor, task, within_s=60)
    assert outcome.failure is Failure.TIMEOUT, outcome.fail_reason
    assert time.monotonic() - began < 30  # not the trainer's 120 s
