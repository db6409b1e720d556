"""Preset records: a run's numbers go into results.json and the README table is rendered from them."""

from __future__ import annotations

import json

from training.records import END, START, refuse_resumed, run_record, save_record


def _record(student_r1: float, completed: bool = True) -> dict:
    metrics = {
        "test_teacher": {"banking77/r@1": 0.766, "mqp/f1": 0.75},
        "test_distilled": {"banking77/r@1": student_r1, "mqp/f1": 0.76},
        "teacher": {"mqp/f1": 0.79},
        "distilled": {"mqp/f1": 0.81},
    }
    training = {"schedule": {"steps_run": 600, "planned": 600, "configured": 600, "schedule_completed": completed}}
    return run_record(metrics, training, 840.0, "flipmatch distill --record default_run", {"optim": {}})


def test_record_lands_in_results_and_renders_the_readme_table(tmp_path):
    results, readme = tmp_path / "results.json", tmp_path / "README.md"
    results.write_text(json.dumps({"runs": [1]}))
    readme.write_text(f"intro\n{START}\nold table\n{END}\noutro\n")
    save_record("default_run", _record(0.751), results, readme)
    data = json.loads(results.read_text())
    assert data["runs"] == [1] and data["default_run"]["steps_run"] == 600  # other keys kept
    assert data["default_run"]["dev_student"] == {"mqp/f1": 0.81}
    assert data["default_run"]["dev_teacher"] == {"mqp/f1": 0.79}
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert "| 0.766 | 0.751 | 14.0 min | 600 / 600 (600) | yes |" in text
    assert "`long` (`make distill-long`) | not run yet" in text


def test_incomplete_schedule_is_shown(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{START}\n{END}\n")
    save_record("long_run", _record(0.77, completed=False), tmp_path / "r.json", readme)
    assert "| 600 / 600 (600) | no |" in readme.read_text()


def test_each_preset_row_names_the_student_its_record_was_trained_with(tmp_path):
    results, readme = tmp_path / "results.json", tmp_path / "README.md"
    readme.write_text(f"{START}\n{END}\n")
    record = run_record({"test_teacher": {"banking77/r@1": 0.7}, "test_distilled": {"banking77/r@1": 0.8}},
                        {"schedule": {"steps_run": 1, "planned": 1, "configured": 1, "schedule_completed": True}},
                        60.0, "cmd", {"student": {"model": "packaged:gemma3-270m", "num_layers": 9}})
    save_record("default_run", record, results, readme)
    assert "`default` (`make distill`)<br>student: gemma3-270m @ 9 |" in readme.read_text()


def test_a_run_that_would_resume_a_checkpoint_cannot_be_recorded(tmp_path):
    assert refuse_resumed(tmp_path, resume=True) is None  # fresh folder: fine
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    reason = refuse_resumed(tmp_path, resume=True)
    assert reason and "checkpoint.pt" in reason and "run.resume=false" in reason
    assert refuse_resumed(tmp_path, resume=False) is None  # trains from scratch despite the file
