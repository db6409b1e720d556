"""schemathesis hooks for this repository (loaded by schemathesis.toml): send JSON Lines bodies as the text they
are. schemathesis knows JSON, forms, XML and text/*, but not application/x-ndjson, which /import reads."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def jsonl(_ctx: Any, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return (value if isinstance(value, str) else str(value)).encode("utf-8", "surrogatepass")
