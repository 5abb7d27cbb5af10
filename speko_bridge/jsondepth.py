"""How deep a JSON document nests, measured before it is parsed.

msgspec (like most JSON parsers) parses nesting by recursion and raises ``RecursionError``
past roughly a thousand levels: a 64 KiB mint body of ``[[[[...`` would otherwise be a 500
with a traceback. The check here is linear in the input and never recurses, so hostile
input is answered with a defined 400 before any parser sees it.
"""

from __future__ import annotations

import re

#: Deepest JSON accepted anywhere the bridge reads JSON. Real documents are shallow: a tool's
#: JSON Schema nests objects-in-properties a handful of levels, metadata is a flat map;
#: 64 leaves room for any of them and stays far below the ~1,000 levels where parsers
#: (msgspec, ``json``) hit the recursion limit.
MAX_JSON_DEPTH = 64

# A JSON string, escapes included, or an unterminated one up to the end (so a body full of
# quotes is still one linear pass); brackets inside strings do not nest.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN = frozenset(b"[{")


def too_deep(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``data`` opens more than ``limit`` arrays/objects inside each other.

    Malformed input is measured as well as it can be (the parser will refuse it anyway)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # the common case: cannot nest deeper than it has brackets
    depth = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        if byte in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif depth:
            depth -= 1
    return False
