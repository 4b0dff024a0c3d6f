"""optuna-dashboard serves our sweeps over HTTP on loopback, real config values included."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from inspect_sweeps import Built

from sweeper.analysis import dashboard


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get_json(url: str, server: subprocess.Popen[str] | None = None, timeout_s: float = 60.0) -> Any:
    """GET ``url`` as JSON, retrying while the server starts (and failing at once if it died)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            if server is not None and server.poll() is not None:
                raise AssertionError(f"the dashboard exited: {server.communicate()}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_dashboard_command_serves_the_sweep_on_loopback(finished: Built) -> None:
    port = free_port()
    executable = str(Path(sys.executable).parent / "sweeper")  # the installed console script
    command = [
        executable,
        "dashboard",
        "--storage",
        finished.url,
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        studies = get_json(f"http://127.0.0.1:{port}/api/studies", server)["study_summaries"]
        (study,) = [s for s in studies if s["study_name"] == finished.sweep_id]
        assert study["user_attrs"]  # the sweep's name, spec and state travel as study user attrs
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}")
        trials = {t["number"]: t for t in detail["trials"]}
        best = finished.study.best_trial
        attrs = {a["key"]: a["value"] for a in trials[best.number]["user_attrs"]}
        assert json.loads(attrs["config"]) == best.user_attrs["config"]  # the nested, real values
        assert [float(v) for v in trials[best.number]["values"]] == [best.value]
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    # One line of ours; no server banner, no access log.
    assert stderr.splitlines() == [f"dashboard of {finished.url} on http://127.0.0.1:{port}/"]


def test_wsgi_app_over_an_open_storage(finished: Built) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    import threading

    server = make_server("127.0.0.1", 0, dashboard.app(finished.storage), handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        studies = get_json(f"http://127.0.0.1:{server.server_port}/api/studies")["study_summaries"]
        assert finished.sweep_id in {s["study_name"] for s in studies}
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.53"])
def test_loopback_hosts_need_no_warning(host: str) -> None:
    assert dashboard.is_loopback(host)
    assert dashboard.exposure_warning(host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_other_hosts_are_warned_about(host: str) -> None:
    warning = dashboard.exposure_warning(host)
    assert warning is not None and warning.startswith(f"WARNING: serving the dashboard on {host}")
    assert "no login" in warning


def test_bad_port_is_a_usage_error(finished: Built) -> None:
    from sweeper.errors import UsageError

    with pytest.raises(UsageError, match=r"dashboard port must be in 1\.\.65535, got 70000"):
        dashboard.serve(finished.storage, port=70000)


def _request(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _dashboard(url: str, port: int, *flags: str) -> subprocess.Popen[str]:
    executable = str(Path(sys.executable).parent / "sweeper")
    command = [executable, "dashboard", "--storage", url, "--port", str(port), *flags]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _a_study_with_a_running_trial(tmp_path: Path) -> tuple[str, int, int]:
    import optuna

    from sweeper.storage.urls import open_storage

    url = f"journal://{tmp_path / 'journal.log'}"
    study = optuna.create_study(storage=open_storage(url), study_name="target")
    trial = study.ask()
    return url, study._study_id, trial._trial_id


def test_the_dashboard_refuses_every_change_by_default(tmp_path: Path) -> None:
    url, study_id, trial_id = _a_study_with_a_running_trial(tmp_path)
    port = free_port()
    server = _dashboard(url, port)
    base = f"http://127.0.0.1:{port}"
    try:
        get_json(f"{base}/api/studies", server)
        attempts = [
            ("DELETE", f"/api/studies/{study_id}", None),
            ("POST", f"/api/trials/{trial_id}/tell", {"state": "Complete", "values": [1.0]}),
            ("POST", "/api/studies", {"study_name": "intruder", "directions": ["minimize"]}),
            ("PUT", f"/api/studies/{study_id}/note", {"version": 1, "body": "owned"}),
            ("PATCH", f"/api/studies/{study_id}", {}),
        ]
        for method, path, body in attempts:
            status, answer = _request(method, base + path, body)
            assert status == 403, (method, path, status)
            reason = json.loads(answer)["reason"]
            assert reason.startswith(
                "the dashboard is read-only: start it with `sweeper dashboard --allow-writes`"
            )
            assert f"{method} {path}" in reason
        studies = get_json(f"{base}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["target"]  # nothing deleted, nothing created
        (trial,) = get_json(f"{base}/api/studies/{study_id}")["trials"]
        assert trial["state"] == "Running"
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_allow_writes_lets_the_dashboard_tell_and_delete_and_says_so(tmp_path: Path) -> None:
    url, study_id, trial_id = _a_study_with_a_running_trial(tmp_path)
    port = free_port()
    server = _dashboard(url, port, "--allow-writes")
    base = f"http://127.0.0.1:{port}"
    try:
        get_json(f"{base}/api/studies", server)
        tell = {"state": "Complete", "values": [1.0]}
        assert _request("POST", f"{base}/api/trials/{trial_id}/tell", tell)[0] == 204
        (trial,) = get_json(f"{base}/api/studies/{study_id}")["trials"]
        assert trial["state"] == "Complete"
        assert _request("DELETE", f"{base}/api/studies/{study_id}")[0] == 204
        assert get_json(f"{base}/api/studies")["study_summaries"] == []
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    stderr = " ".join(stderr.split())  # rich wraps the warning to the terminal's width
    assert (
        "WARNING: serving the dashboard on 127.0.0.1: it has no login, so any program on this machine"
        in stderr
    )
    assert "delete or create sweeps" in stderr and "since --allow-writes is given" in stderr


def test_the_exposure_warning_says_what_a_visitor_can_do() -> None:
    read_only = dashboard.exposure_warning("0.0.0.0")
    writable = dashboard.exposure_warning("0.0.0.0", allow_writes=True)
    assert read_only is not None and writable is not None
    assert "It is read-only: changes are refused unless --allow-writes is given" in read_only
    assert "delete" not in read_only
    assert "can read every sweep" in writable
    assert "delete or create sweeps, tell, skip or set user attrs of trials, edit notes" in writable
