"""`flipmatch` command line: train-teacher, distill, eval, export, serve."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="FlipMatch: flipped distillation and serving.",
)

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"
DEFAULT_ARTIFACT = "artifacts/flipmatch-default"

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="YAML run config.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. --set loss.margin=0.08.")]


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "sentence_transformers", "transformers", "peft"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config(path: Path, overrides: list[str] | None):
    from training.config import load_config

    cfg = load_config(path, overrides)
    if os.environ.get("FLIPMATCH_DATASETS_DIR"):
        cfg.data.data_dir = os.environ["FLIPMATCH_DATASETS_DIR"]
    return cfg


@app.command("train-teacher")
def train_teacher(config: ConfigOpt = DEFAULT_CONFIG, set_: SetOpt = None) -> None:
    """Fine-tune the teacher encoder on the configured pairs; print dev metrics before and after."""
    _setup_logging()
    from training.distill import prepare_teacher
    from training.runs import RunDir

    cfg = _config(config, set_)
    run = RunDir(cfg.run.output_dir)
    run.save_config(cfg)
    _, _, report = prepare_teacher(cfg, run, "cpu" if cfg.run.device == "auto" else cfg.run.device)
    run.write_json("teacher_metrics.json", report)
    _print_table(report, ["teacher_base", "teacher"])


@app.command()
def distill(
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    output: Annotated[Path, typer.Option(help="Where to export the merged encoder.")] = Path(DEFAULT_ARTIFACT),
    export: Annotated[bool, typer.Option(help="Export after training.")] = True,
    record: Annotated[
        str | None,
        typer.Option(
            help="Write this run's test metrics, time and schedule into docs/results.json under this "
            "key (default_run, long_run) and re-render the README's preset table."
        ),
    ] = None,
) -> None:
    """Teacher fine-tune -> flipped distillation -> evaluation -> export (with parity check)."""
    _setup_logging()
    from training.distill import distill as run_distill

    cfg = _config(config, set_)
    if record:
        from training.records import refuse_resumed

        reason = refuse_resumed(Path(cfg.run.output_dir), cfg.run.resume)
        if reason:
            raise typer.BadParameter(reason, param_hint="--record")
    started = time.time()
    result = run_distill(cfg)
    if not result.metrics:
        return  # a non-zero data-parallel rank
    if export:
        _export(result, cfg, output)
    _print_table(result.metrics, ["teacher", "zero_shot", "distilled"], title="dev")
    _print_table(result.metrics, ["test_teacher", "test_zero_shot", "test_distilled"], title="test")
    wall = time.time() - started
    schedule = result.training["schedule"]
    typer.echo(
        f"total wall time {wall:.0f}s; steps run {schedule['steps_run']} of planned {schedule['planned']} "
        f"(configured {schedule['configured']}; schedule completed: {schedule['schedule_completed']}); "
        f"run folder {result.run_dir}"
    )
    if record:
        from training.records import run_record, save_record

        command = "flipmatch " + " ".join(sys.argv[1:])
        save_record(record, run_record(result.metrics, result.training, wall, command, cfg.model_dump()))
        typer.echo(f"recorded as {record} in docs/results.json; README preset table re-rendered")


@app.command("export")
def export_cmd(
    run_dir: Annotated[Path, typer.Option("--run", help="Run folder of a finished distill.")] = Path("runs/default"),
    output: Annotated[Path, typer.Option(help="Artifact folder to write.")] = Path(DEFAULT_ARTIFACT),
) -> None:
    """Export the best checkpoint of a run as a LoRA-merged sentence-transformers folder."""
    _setup_logging()
    from training.config import load_config
    from training.distill import DistillResult
    from training.runs import RunDir
    from training.student import load_student

    cfg = load_config(run_dir / "config.yaml")
    student = load_student(cfg.student, cfg.lora)
    RunDir(run_dir).load_best(student)
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
    from training.evaluate.evaluators import thresholds_from

    training = metrics.pop("training", {})
    result = DistillResult(run_dir, student, metrics, thresholds_from(metrics.get("distilled", {})), training)
    _export(result, cfg, output)


@app.command("eval")
def eval_cmd(
    model: Annotated[
        str,
        typer.Option(help="ST folder or id (e.g. an export), a run folder, or student:<model>[@mean|@lasttoken]."),
    ],
    config: ConfigOpt = DEFAULT_CONFIG,
    set_: SetOpt = None,
    split: Annotated[str, typer.Option(help="dev, or test at the thresholds chosen on dev")] = "dev",
    tasks: Annotated[
        str,
        typer.Option(
            help="Comma list of banking77 (FAQ retrieval, no-match, pairs), mqp, rqe, medquad; or 'training' "
            "for the config's own distillation dev/test sets."
        ),
    ] = "banking77,mqp,rqe,medquad",
    teacher: Annotated[str | None, typer.Option(help="Also report Spearman agreement with this encoder.")] = None,
) -> None:
    """Evaluate any encoder (teacher, student with or without adapters, an export, any ST model)."""
    _setup_logging()
    if split not in ("dev", "test"):
        raise typer.BadParameter("split must be dev or test")
    cfg = _config(config, set_)
    if tasks == "training":
        from training.data.sources import load_task_data
        from training.evaluate.encoders import load_encoder
        from training.evaluate.evaluators import evaluate_split
        from training.teacher import TeacherScorer, load_teacher

        miner = TeacherScorer(load_teacher(cfg.teacher.model))  # the splits' hard negatives: base teacher
        data = load_task_data(cfg.data, miner.embed)
        results = evaluate_split(load_encoder(model), data.dev, data.test, split)
    else:
        from training.quality.suite import evaluate_encoder

        try:
            results = evaluate_encoder(model, cfg.data, tasks.split(","), split, teacher)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
    typer.echo(json.dumps(results, indent=2))


@app.command()
def serve(
    model_path: Annotated[str | None, typer.Option(help="Artifact to serve (FLIPMATCH_MODEL_PATH).")] = None,
    demo: Annotated[bool, typer.Option(help="Preload the Banking77 and MedQuAD demo corpora.")] = True,
) -> None:
    """Serve the encoder; trains and exports the default model first if it is absent."""
    _setup_logging()
    path = model_path or os.environ.get("FLIPMATCH_MODEL_PATH") or DEFAULT_ARTIFACT
    if not (Path(path) / "modules.json").exists() and path == DEFAULT_ARTIFACT:
        typer.echo(f"{path} not found: training the default model first (about 15 minutes on 2 CPU cores)")
        distill(config=DEFAULT_CONFIG, set_=None, output=Path(path), export=True)
    env = {**os.environ, "FLIPMATCH_MODEL_PATH": path}
    if demo:
        env.setdefault("FLIPMATCH_DEMO__PRELOAD", "true")
    if not env.get("FLIPMATCH_AUTH__ADMIN_KEY") and not env.get("FLIPMATCH_AUTH__ADMIN_KEY_FILE"):
        env["FLIPMATCH_AUTH__ADMIN_KEY_FILE"] = str(_local_admin_key())
    # The service is its own package: run it as a process rather than import it (the halves share only
    # the artifact on disk).
    os.execvpe(sys.executable, [sys.executable, "-m", "service"], env)


def _local_admin_key(path: Path = Path(".flipmatch/admin.key")) -> Path:
    """A random admin key for a local run, created once (mode 600); write routes need it."""
    import secrets

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32) + "\n")
        path.chmod(0o600)
    typer.echo(f"admin key for write routes: {path} (export ADMIN_KEY=$(cat {path}))")
    return path


def _export(result, cfg, output: Path) -> None:
    from training.export import export_student, model_card

    metrics = {
        f"{stage}/{k}": v
        for stage, values in result.metrics.items()
        for k, v in values.items()
        if stage in ("distilled", "test_distilled")
    }
    threshold = next(iter(result.thresholds.values()), 0.5)
    manifest = {
        "student_id": cfg.student.model,
        "teacher_id": cfg.teacher.model,
        "match_threshold": threshold,
        "thresholds": result.thresholds,
        "metrics": metrics,
        "training_config": cfg.model_dump(),
        "training": result.training,
    }
    card = model_card(
        student_id=cfg.student.model,
        teacher_id=cfg.teacher.model,
        metrics=metrics,
        threshold=threshold,
        config=cfg.model_dump(),
        training=result.training,
    )
    path = export_student(
        result.student, output, manifest=manifest, model_card=card, match_head=cfg.loss.generative_weight > 0
    )
    typer.echo(f"exported {path} (parity check passed)")


def _print_table(report: dict[str, dict[str, float]], stages: list[str], title: str = "") -> None:
    stages = [s for s in stages if s in report]
    keys = sorted(
        {
            k
            for s in stages
            for k in report[s]
            if k.endswith(("/f1", "/r@1", "/r@5", "/mrr@10", "/roc_auc", "/ap")) or k == "primary"
        }
    )
    typer.echo(f"\n{title:<22}" + "".join(f"{s:>16}" for s in stages))
    for key in keys:
        typer.echo(f"{key:<22}" + "".join(f"{report[s].get(key, float('nan')):>16.4f}" for s in stages))


if __name__ == "__main__":
    app()
