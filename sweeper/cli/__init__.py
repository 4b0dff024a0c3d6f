"""The ``sweeper`` command line: :data:`main` and the command groups that register on it.

Modules: ``main`` (the group, error handling), ``options`` (shared options), ``format`` (tables,
JSON), and one module per command group: ``spec_commands``, ``engine_commands``,
``inspect_commands``, ``share_commands``.
"""

from sweeper.cli import engine_commands, inspect_commands, share_commands, spec_commands
from sweeper.cli.main import main

__all__ = ["engine_commands", "inspect_commands", "main", "share_commands", "spec_commands"]
