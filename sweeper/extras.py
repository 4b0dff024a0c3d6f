"""Optional extras: features whose libraries are not core dependencies say which extra to install.

Every hint is spelled one way, the README's: ``pip install -e '.[EXTRA]'`` run in sweeper's checkout.
"""

from __future__ import annotations

from importlib.util import find_spec

from sweeper.errors import UsageError


def install_hint(*extras: str) -> str:
    """The command that installs ``extras``, as the README spells it.

    Example:
        >>> install_hint("dashboard")
        "pip install -e '.[dashboard]' (in sweeper's checkout)"
        >>> install_hint("examples", "torch")
        "pip install -e '.[examples,torch]' (in sweeper's checkout)"
    """
    return f"pip install -e '.[{','.join(extras)}]' (in sweeper's checkout)"


def require(package: str, extra: str, feature: str) -> None:
    """Raise a one-line :class:`UsageError` naming the extra when ``package`` is not installed.

    Example:
        >>> require("json", "dashboard", "the report")  # installed: nothing happens
    """
    if find_spec(package) is None:
        raise UsageError(
            f"{feature} needs the {package!r} package, which is not installed; "
            f"install it with: {install_hint(extra)}"
        )
