"""The exit statuses of the ``clipper`` command, in a module of their own so that the commands and
the renderers below :mod:`reconciler.cli` can use them without importing it."""

from __future__ import annotations

EXIT_OK, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2
EXIT_BROKEN_PIPE = 141  # as a process killed by SIGPIPE reports it in a shell (128 + 13)
