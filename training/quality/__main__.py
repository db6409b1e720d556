"""python -m training.quality run [--budget-minutes 90] [--tiny]: run the plan, write docs/results.md.
`eval --model SPEC` scores one encoder on the benchmark tasks; `report` re-renders from results.json."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from pathlib import Path

DEFAULT_CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "default.yaml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.quality")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmark and write the report")
    run.add_argument("--budget-minutes", type=float, default=90.0, help="the plan's; what would end later is skipped")
    run.add_argument("--run-minutes", type=float, default=2.5, help="each training's student budget")
    run.add_argument("--config", default=DEFAULT_CONFIG, help="base training config (YAML)")
    run.add_argument("--work-dir", default="runs/quality", help="run folders, shared teacher, results.json")
    run.add_argument("--output", default="docs/results.md")
    run.add_argument("--data-dir", default=os.environ.get("FLIPMATCH_DATASETS_DIR"))
    run.add_argument("--device", default="cpu")
    run.add_argument("--tiny", action="store_true", help="tiny plan (tests): 2 steps, 2 seeds, short sweep")
    ev = sub.add_parser("eval", help="evaluate one encoder on the benchmark tasks (thresholds from dev)")
    ev.add_argument(
        "--model", required=True, help="ST folder or id, a distill run folder, or student:<model>[@mean|@lasttoken]"
    )
    ev.add_argument("--config", default=DEFAULT_CONFIG, help="config whose data section defines the splits")
    ev.add_argument("--data-dir", default=os.environ.get("FLIPMATCH_DATASETS_DIR"))
    ev.add_argument("--tasks", default="banking77,mqp,rqe,medquad")
    ev.add_argument("--split", choices=["dev", "test"], default="dev")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--teacher", help="also report Spearman agreement with this encoder (same spec forms)")
    tn = sub.add_parser("tune", help="train variants on one shared teacher, dev only; append to docs/tuning.json")
    tn.add_argument("--config", default=DEFAULT_CONFIG)
    tn.add_argument("--variant", action="append", required=True, help="name:key=value;key=value")
    tn.add_argument("--set", dest="common", action="append", default=[], help="override for every variant")
    tn.add_argument("--seeds", default="42", help="comma-separated run seeds")
    tn.add_argument("--work-dir", default="runs/tune")
    tn.add_argument("--log", default="docs/tuning.json")
    sub.add_parser("report", help="re-render the report from <work-dir>/results.json").add_argument(
        "--work-dir", default="runs/quality"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


    from training.quality.plan import full_plan, tiny_plan
    from training.quality.report import write_report
    from training.quality.runner import BenchmarkRunner

    command = "python -m training.quality " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.command == "eval":
        from training.config import load_config
        from training.quality.suite import evaluate_encoder

        cfg = load_config(args.config, [f"data.data_dir={args.data_dir}"] if args.data_dir else [])
        out = evaluate_encoder(args.model, cfg.data, args.tasks.split(","), args.split, args.teacher, args.device)
        print(json.dumps(out, indent=2))
        return 0
    if args.command == "tune":
        from training.quality.tuning import tune

        seeds = [int(s) for s in args.seeds.split(",")]
        tune(args.config, args.variant, args.common, seeds, Path(args.work_dir), Path(args.log))
        return 0
    if args.command == "report":
        results = json.loads((Path(args.work_dir) / "results.json").read_text())
        results = with_preset_records(results, Path("docs/results.json"))  # a work dir's copy has none
        print(write_report(results, results.get("command", command), Path("docs/results.md")))
        return 0
    plan = tiny_plan(args.config) if args.tiny else full_plan(args.config, args.run_minutes)
    results = BenchmarkRunner(
        plan, Path(args.work_dir), args.data_dir, args.device, None if args.tiny else args.budget_minutes, command
    ).run()
    # The raw numbers ship beside the report (`report --work-dir docs` re-renders it from a clean checkout),
    # keeping the preset records other commands wrote there (`flipmatch distill --record`).
    results = with_preset_records(results, Path(args.output).parent / "results.json")
    report = write_report(results, command, Path(args.output))
    (report.parent / "results.json").write_text(json.dumps(results, indent=1, default=float))
    print(report)
    return 0


def with_preset_records(results: dict, existing: Path) -> dict:
    """`results` plus the preset records (default_run, long_run, ...) already in `existing`."""
    from training.records import PRESETS

    kept = json.loads(existing.read_text()) if existing.exists() else {}
    return {**results, **{key: kept[key] for key, _ in PRESETS if key in kept}}


if __name__ == "__main__":
    sys.exit(main())
