"""Node names: the one rule for them (a lowercase DNS label), light enough for any caller to import.

`federation.partners` re-exports `check_node_name`; the node's config types (`node.config_fields`)
check `[node] name`, partners, issuers and supervisors with it.
"""

from __future__ import annotations

import re
from typing import Any

from federation.errors import DocumentError

NODE_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def check_node_name(name: Any) -> str:
    """Return `name` if it is a valid node name; DocumentError (400) otherwise.

    Names are compared exactly: NFC and NFD spellings are different names and never merged.
    Non-ASCII names, U+0000 and lone surrogates are refused outright.
    """
    if not isinstance(name, str) or not name:
        raise DocumentError("node name must be a non-empty string", code="bad_name")
    if not name.isascii() or "\x00" in name:
        raise DocumentError(f"node name must be ASCII, got {name!r}", code="bad_name")
    if not NODE_NAME_RE.fullmatch(name):
        raise DocumentError(
            f"node name must be 1–63 of a–z, 0–9 and '-', not starting or ending with '-', got {name!r}",
            code="bad_name",
        )
    return name
