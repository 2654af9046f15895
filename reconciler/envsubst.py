"""``${VAR}`` substitution in manifest strings (``${VAR:-default}``, ``$$`` for a literal ``$``)."""

from __future__ import annotations

import re
from collections.abc import Mapping

_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class UnsetVariable(Exception):
    def __init__(self, name: str):
        super().__init__(f"environment variable {name} is not set (use ${{{name}:-default}} for a default)")
        self.name = name


def substitute(text: str, env: Mapping[str, str]) -> str:
    """Replace every ``${VAR}`` in ``text``; raises :class:`UnsetVariable` for the first unset one."""
    if "$" not in text:
        return text

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise UnsetVariable(name)

    return _PATTERN.sub(repl, text)
