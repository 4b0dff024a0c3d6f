"""Secrets never reach outputs or logs: passwords in URLs and ``token=...``-style values are masked.

Trainers and trackers fail with messages that may quote a connection string or an API key; the
agent passes every fail reason and tracker error through :func:`redact` before it stores, prints
or logs it. Trainers never see the agent's storage URL: :func:`without_secrets` takes
:data:`SECRET_ENV_VARS` out of the environment while a trial runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

STORAGE_ENV_VAR = "SWEEPER_STORAGE"
"""The agent's storage URL, password included: never a trainer's business."""
SECRET_ENV_VARS = (STORAGE_ENV_VAR,)

# The password runs to the last `@` of the URL (a password may hold an unencoded `@`).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<secret>\S+)(?P<tail>@)")
_KEY_VALUE = re.compile(
    r"(?P<head>(?i:[A-Za-z_]*(?:password|passwd|pwd|token|secret|api_key|apikey|access_key))"
    r"[\"']?\s*[=:]\s*[\"']?)(?P<secret>[^\s\"',;&)\]}]+)"
)


def redact(text: str) -> str:
    """``text`` with URL passwords and secret-looking ``key=value`` values replaced by ``***``.

    Example:
        >>> redact("cannot reach postgresql://bob:hunter2@db/x (api_key=abc123)")
        'cannot reach postgresql://bob:***@db/x (api_key=***)'
        >>> redact("postgres://postgres:se@cret@127.0.0.1/db and redis://:pw@cache")
        'postgres://postgres:***@127.0.0.1/db and redis://:***@cache'
    """
    text = _URL_PASSWORD.sub(r"\g<head>***\g<tail>", text)
    return _KEY_VALUE.sub(r"\g<head>***", text)


@contextmanager
def without_secrets(environ: os._Environ[str] | dict[str, str] = os.environ) -> Iterator[None]:
    """Run the block with :data:`SECRET_ENV_VARS` out of ``environ``; put them back afterwards.

    Child processes started inside the block (a program trainer, a trainer's own subprocesses)
    inherit the environment without them.

    Example:
        >>> env = {"SWEEPER_STORAGE": "postgresql://u:pw@db/x", "HOME": "/root"}
        >>> with without_secrets(env):
        ...     sorted(env)
        ['HOME']
        >>> sorted(env)
        ['HOME', 'SWEEPER_STORAGE']
    """
    taken = {name: environ.pop(name) for name in SECRET_ENV_VARS if name in environ}
    try:
        yield
    finally:
        environ.update(taken)
