from __future__ import annotations

import pytest

from tests.fixtures.tiny_models import build_tiny_data, build_tiny_gemma, build_tiny_student, build_tiny_teacher


@pytest.fixture(scope="session")
def tiny_student_dir(tmp_path_factory):
    return build_tiny_student(tmp_path_factory.mktemp("tiny_student"))


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory):
    return build_tiny_teacher(tmp_path_factory.mktemp("tiny_teacher"))


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    return build_tiny_data(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def tiny_student4_dir(tmp_path_factory):
    """4 blocks: room for a frozen prefix below LoRA on the top blocks."""
    return build_tiny_student(tmp_path_factory.mktemp("tiny_student4"), num_layers=4)


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory):
    """4 Gemma3 blocks (sliding, full, sliding, full), window 4, with the real Gemma-3 tokenizer."""
    return build_tiny_gemma(tmp_path_factory.mktemp("tiny_gemma"))
