"""Optional extras: features whose libraries are not core dependencies say which extra to install."""

from __future__ import annotations

from importlib.util import find_spec

from sweeper.errors import UsageError


def require(package: str, extra: str, feature: str) -> None:
    """Raise a one-line :class:`UsageError` naming the extra when ``package`` is not installed.

    Example:
        >>> require("json", "dashboard", "the report")  # installed: nothing happens
    """
    if find_spec(package) is None:
        raise UsageError(
            f"{feature} needs the {package!r} package, which is not installed; "
            f"install it with: pip install 'sweeper[{extra}]'"
        )
