"""Secrets never reach outputs or logs: passwords in URLs and ``token=...``-style values are masked.

Trainers and trackers fail with messages that may quote a connection string or an API key; the
agent passes every fail reason and tracker error through :func:`redact` before it stores, prints
or logs it.
"""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]+:)(?P<secret>[^@\s]+)(?P<tail>@)")
_KEY_VALUE = re.compile(
    r"(?P<head>(?i:[A-Za-z_]*(?:password|passwd|pwd|token|secret|api_key|apikey|access_key))"
    r"[\"']?\s*[=:]\s*[\"']?)(?P<secret>[^\s\"',;&)\]}]+)"
)


def redact(text: str) -> str:
    """``text`` with URL passwords and secret-looking ``key=value`` values replaced by ``***``.

    Example:
        >>> redact("cannot reach postgresql://bob:hunter2@db/x (api_key=abc123)")
        'cannot reach postgresql://bob:***@db/x (api_key=***)'
    """
    text = _URL_PASSWORD.sub(r"\g<head>***\g<tail>", text)
    return _KEY_VALUE.sub(r"\g<head>***", text)
