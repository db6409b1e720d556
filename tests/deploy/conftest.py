"""Fixtures for tests/deploy: the service's settings class and registered metric names, skipping with the reason
until the service is importable. The tiny encoder comes from tests/conftest.py (`tiny_artifact`)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def service_settings_cls():
    try:
        from service.settings import ServiceSettings
    except ImportError as err:
        pytest.skip(f"service.settings.ServiceSettings is not importable yet ({err})")
    return ServiceSettings


@pytest.fixture(scope="session")
def service_metric_names() -> set[str]:
    """Exposition names of every metric service.metrics registers (fresh registry, nothing observed)."""
    try:
        from service.metrics import Metrics
    except ImportError as err:
        pytest.skip(f"service.metrics.Metrics is not importable yet ({err})")
    from prometheus_client import generate_latest
    from stack_files import exposition_names

    metrics = Metrics()
    names = {n for n in exposition_names(generate_latest(metrics.registry).decode()) if n.startswith("flipmatch_")}
    assert names, "service.metrics.Metrics registered no flipmatch_ metric"
    return names

