"""docs/api.md stays in step with the app: every route has a section with a curl example, and every setting
is listed."""

from __future__ import annotations

import re
from pathlib import Path

from service.app import create_app
from service.settings import ServiceSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_every_route_has_a_curl_example(make_settings):
    text = DOC.read_text(encoding="utf-8")
    sections = re.split(r"\n### ", text)
    spec = create_app(make_settings()).openapi()
    routes = {(method.upper(), path) for path, operations in spec["paths"].items() for method in operations}
    assert len(routes) == 21
    for method, path in routes:
        heading = f"`{method} {path}`"
        matching = [s for s in sections if s.startswith(heading)]
        assert matching, f"docs/api.md has no section {heading}"
        assert "curl " in matching[0], f"{heading} has no curl example"


def test_every_setting_is_listed():
    text = DOC.read_text(encoding="utf-8")

    def names(model: type, prefix: str) -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                out += names(annotation, f"{prefix}{name.upper()}__")
            else:
                out.append(f"{prefix}{name.upper()}")
        return out

    missing = [n for n in names(ServiceSettings, "FLIPMATCH_") if n not in text]
    assert missing == []
