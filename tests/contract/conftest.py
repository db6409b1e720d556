from __future__ import annotations

import pytest

from tests.fixtures.tiny_models import build_tiny_student


@pytest.fixture(scope="session")
def tiny_student_dir(tmp_path_factory):
    return build_tiny_student(tmp_path_factory.mktemp("tiny_student"))
