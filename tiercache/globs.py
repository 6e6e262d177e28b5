"""Redis-style glob patterns: escaping a literal prefix, and matching in L1."""

from __future__ import annotations

import re

__all__ = ["escape_glob", "glob_to_regex"]

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def escape_glob(text: str) -> str:
    """Return `text` with glob characters escaped, so it matches only itself."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Redis glob (`*`, `?`, `[a-z]`, `[^a]`, `\\x`) into a regex."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith("^")
                body = body[1:] if negate else body
                out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)
