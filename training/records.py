"""Preset run records: `flipmatch distill --record default_run` writes what the run measured into
docs/results.json and re-renders the README's preset table from it, so the README never carries a number
no command produced."""

from __future__ import annotations

import json
import platform
import re
import time
from pathlib import Path
from typing import Any

RESULTS = Path("docs/results.json")
README = Path("README.md")
# The preset table's rows, in order: metric key -> label (a set the preset's sources lack is skipped).
HEADLINE = {"banking77/r@1": "Banking77 R@1", "mqp/f1": "MQP F1", "medquad/r@1": "MedQuAD q→a R@1", "rqe/f1": "RQE F1"}
PRESETS = (
    ("default_run", "`default` (`make distill`)"),
    ("long_run", "`long` (`make distill-long`)"),
    ("rerank_run", "`default` + match head (`make distill-rerank`)"),
    ("gemma_run", "`default` with `student.model=packaged:gemma3-270m`, 9 blocks (`make distill-gemma`)"),
)
START, END = "<!-- presets:start -->", "<!-- presets:end -->"


def _cpu() -> str:
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def refuse_resumed(output_dir: Path, resume: bool) -> str | None:
    """Why a run cannot be recorded, or None. A record's wall time and steps describe one training from
    scratch: a run that resumes a checkpoint would record the time of its tail only."""
    from training.runs import CHECKPOINT  # torch-free callers (report rendering) import this module too

    checkpoint = Path(output_dir) / CHECKPOINT
    if resume and checkpoint.exists():
        return (
            f"{checkpoint} exists, so this run would resume it and its record would time only the rest. "
            f"Remove {output_dir} (or pass --set run.resume=false) to record a run trained from scratch."
        )
    return None


def run_record(metrics: dict[str, Any], training: dict[str, Any], wall_s: float, command: str, config: dict) -> dict:
    """The test metrics of teacher and student (dev thresholds applied unchanged), their dev metrics (what the
    run chose on), time and schedule."""
    schedule = training["schedule"]
    return {
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "cpu": _cpu(),
        "wall_s": round(wall_s, 1),
        "steps_run": schedule["steps_run"],
        "planned_steps": schedule["planned"],
        "configured_steps": schedule["configured"],
        "schedule_completed": schedule["schedule_completed"],
        "precision": training.get("precision", {}),
        "train_texts_per_s": training.get("throughput", {}).get("train_texts_per_s"),
        "test_teacher": metrics.get("test_teacher", {}),
        "test_student": metrics.get("test_distilled", {}),
        "test_zero_shot": metrics.get("test_zero_shot", {}),
        "dev_teacher": metrics.get("teacher", {}),
        "dev_student": metrics.get("distilled", {}),
        "config": config,
    }


def save_record(key: str, record: dict, results: Path = RESULTS, readme: Path = README) -> None:
    data = json.loads(results.read_text()) if results.exists() else {}
    data[key] = record
    results.write_text(json.dumps(data, indent=1, default=float))
    if readme.exists():
        readme.write_text(render_presets(readme.read_text(), data))


def _student_of(record: dict) -> str:
    """The student a record was trained with, from its own config: `model @ blocks kept`."""
    student = record.get("config", {}).get("student", {})
    name = str(student.get("model", "?")).removeprefix("packaged:")
    return f"{name} @ {student['num_layers']}" if student.get("num_layers") else name


def preset_table(data: dict) -> str:
    lines = [
        "| preset | test | teacher | student | wall (2 cores) | steps run / planned (configured) "
        "| schedule completed |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, name in PRESETS:
        rec = data.get(key)
        if not rec:
            lines.append(f"| {name} | not run yet | | | | | |")
            continue
        measured = [m for m in HEADLINE if m in rec["test_student"] and m in rec["test_teacher"]]
        for i, metric in enumerate(measured):  # the sets the preset's sources have
            teacher, student = rec["test_teacher"][metric], rec["test_student"][metric]
            label = HEADLINE[metric]
            tail = (
                f"| {rec['wall_s'] / 60:.1f} min | {rec['steps_run']} / {rec['planned_steps']} "
                f"({rec['configured_steps']}) | "
                f"{'yes' if rec['schedule_completed'] else 'no'} |"
                if i == 0
                else "| | | |"
            )
            first = f"{name}<br>student: {_student_of(rec)}" if i == 0 else ""
            lines.append(f"| {first} | {label} | {teacher:.3f} | {student:.3f} {tail}")
    cpus = sorted({data[k]["cpu"] for k, _ in PRESETS if data.get(k)})
    lines.append("")
    lines.append(f"Measured on: {', '.join(cpus) or 'n/a'}; dev thresholds applied unchanged to test.")
    return "\n".join(lines)


def render_presets(readme: str, data: dict) -> str:
    """Replace the README's block between the preset markers (left alone if the markers are missing)."""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    return pattern.sub(lambda _: f"{START}\n{preset_table(data)}\n{END}", readme)
