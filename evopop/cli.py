"""`evopop` command line. Every user mistake ends in one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from evopop.errors import UserError, one_line
from evopop.evolution.engine import WORKER_MODULES, Engine
from evopop.evolution.selection import PopulationDiverged
from evopop.export.formats import ExportFormat
from evopop.rundir import RunDir, default_run_dir

EXIT_USAGE = 2


class CliError(UserError):
    """A problem to report in one line (exit code 2)."""


def _parse_sets(items: Sequence[str]) -> dict[str, Any]:
    overrides = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CliError(f"--set expects key=value, got {item!r}")
        try:
            overrides[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise CliError(f"--set {key}: {raw!r} is not a valid YAML value") from None
    return overrides


def _placement(args: argparse.Namespace) -> dict[str, Any]:
    """`--backend` / `--ray-address` / `--device` as config overrides."""
    overrides: dict[str, Any] = {"device": args.device} if args.device else {}
    if args.backend:
        overrides["backend"] = args.backend
    if args.ray_address:
        if (args.backend or "ray") != "ray":
            raise CliError("--ray-address needs --backend ray")
        overrides["backend"] = "ray"
        overrides["ray.address"] = args.ray_address
    return overrides


def _tensorboard(args: argparse.Namespace) -> dict[str, Any]:
    """`--tensorboard [DIR]` as the config key: the run dir's tensorboard/, or DIR (relative to
    here, so made absolute: the key's relative paths are relative to the run dir)."""
    if args.tensorboard is None:
        return {}
    return {"tensorboard": str(Path(args.tensorboard).absolute()) if args.tensorboard else True}


def _train_config(args: argparse.Namespace) -> tuple[Any, Path]:
    """The config to run and its run directory (a resumed run keeps its own config)."""
    from evopop.config import load_config

    if args.resume:
        if (args.config or args.set or args.seed is not None or args.steps is not None
                or args.run_dir or args.overwrite or args.engine):
            raise CliError("--resume continues a run with its saved config.yaml in RUN_DIR; "
                           "drop CONFIG, --set, --seed, --steps, --engine, --run-dir and "
                           "--overwrite")
        run_dir = RunDir(Path(args.resume))
        if not run_dir.config.is_file():
            raise CliError(f"nothing to resume: {run_dir.path} holds no evopop run "
                           "(no config.yaml)")
        # where members train does not change the result (cpu <-> cuda changes float
        # rounding from then on), so a run may resume elsewhere
        overrides = {**_placement(args), **_tensorboard(args)}
        return load_config(run_dir.config, overrides), run_dir.path
    if not args.config:
        took = (f" (--tensorboard took {args.tensorboard} as its DIR: put it after CONFIG)"
                if args.tensorboard and Path(args.tensorboard).is_file() else "")
        raise CliError(f"train needs a CONFIG file (or --resume RUN_DIR){took}")
    overrides = {**_parse_sets(args.set), **_placement(args), **_tensorboard(args)}
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.steps is not None:
        overrides["max_steps"] = args.steps
    if args.engine:
        overrides["engine"] = args.engine
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.config)
    return load_config(args.config, overrides), run_dir


def _cmd_train(args: argparse.Namespace) -> int:
    from evopop.execution.processes import start_fork_server

    config, run_dir = _train_config(args)
    if config.forks_workers(args.parallel_members):
        # before this process imports torch, so that the two imports overlap
        start_fork_server(WORKER_MODULES)

    from evopop.execution.worker import prepare_trainer
    from evopop.training import run_training, summary_line

    prepare_trainer()
    summary = run_training(config, run_dir, resume=bool(args.resume), progress=not args.quiet,
                            parallel_members=args.parallel_members, wandb=args.wandb,
                            overwrite=args.overwrite)
    _plot_after_run(run_dir, args.quiet)
    if not args.quiet:
        print(summary_line(summary), file=sys.stderr)
    print(json.dumps(summary.to_json()))
    return 0


def _plot_after_run(run_dir: Path, quiet: bool) -> None:
    """Plots are a courtesy after training: a plotting failure must not fail a finished run."""
    from evopop.plots import plot_run

    try:
        paths = plot_run(run_dir)
    except Exception as err:  # the run's results are already safe on disk
        print(f"evopop: plots not written ({type(err).__name__}: {err}); "
              f"try: evopop plot {run_dir}", file=sys.stderr)
        return
    if not quiet:
        print(f"plots: {', '.join(str(p) for p in paths)}", file=sys.stderr)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from evopop.execution.worker import set_one_thread
    from evopop.inference import default_timeline_path, evaluate_agent_file

    set_one_thread()
    record = Path(args.record) if args.record else None
    plot = None if args.plot is None else Path(args.plot or default_timeline_path(args.agent))
    report = evaluate_agent_file(Path(args.agent), args.env, args.episodes, args.seed,
                                 args.stochastic, record, plot, args.device)
    print(json.dumps(report.to_dict()) if args.json else "\n".join(report.lines()))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from evopop.export.writer import export_agent

    fmt = ExportFormat(args.format)
    out = Path(args.out) if args.out else Path(args.agent).with_suffix(fmt.suffix)
    meta = export_agent(Path(args.agent), fmt, out, args.env)
    print(json.dumps({"path": str(out), "bytes": out.stat().st_size, "format": fmt.value,
                      "opset": meta.opset, "methods": meta.methods,
                      "inputs": [i.model_dump() for i in meta.inputs],
                      "outputs": [o.model_dump() for o in meta.outputs]}))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from evopop.execution import Placement
    from evopop.sweep import run_sweep
    from evopop.sweep.report import Column

    if args.ray_address and args.backend != "ray":
        raise CliError("--ray-address needs --backend ray")
    rows = run_sweep(Path(args.sweep), Path(args.out) if args.out else None, args.parallel_runs,
                     args.resume, not args.quiet, Placement(args.backend), args.ray_address)
    solved = sum(bool(r[Column.TARGET_REACHED.value]) for r in rows)
    print(json.dumps({"runs": len(rows), "solved": solved}))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from evopop.plots import plot_run

    paths = plot_run(Path(args.run_dir), Path(args.out) if args.out else None)
    print("\n".join(str(p) for p in paths))
    return 0


def _cmd_envs(args: argparse.Namespace) -> int:
    from evopop.envs import env_ids
    from evopop.wrappers import WrapperKind

    print("environments:", *env_ids(), sep="\n  ")
    print("wrappers:", *(k.value for k in WrapperKind), sep="\n  ")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _device(text: str) -> str:
    from evopop.agents.device import check_device_name

    try:
        return check_device_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit 2) like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"evopop: {message} (see 'evopop --help')\n")


def _renamed(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """An old flag stays known only to say what it is called now."""

    class Renamed(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
            parser.error(f"{old} was renamed: use {new}")

    parser.add_argument(old, action=Renamed, nargs="?", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="evopop", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train from a YAML config")
    train.add_argument("config", nargs="?", help="path to a YAML run config (see configs/)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set ppo.lr=3e-4")
    train.add_argument("--run-dir", help="where to write results (default: runs/<config>-<time>)")
    train.add_argument("--overwrite", action="store_true", help="replace a run in --run-dir")
    train.add_argument("--seed", type=int, help="override the config's seed")
    train.add_argument("--steps", type=int, help="override max_steps")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    train.add_argument("--parallel-members", type=_positive, metavar="N",
                       help="members training at once (default: CPU cores)")
    _renamed(train, "--workers", "--parallel-members")
    train.add_argument("--backend", choices=["local", "processes", "ray"],
                       help="where members train (default: the config's backend)")
    train.add_argument("--engine", choices=[e.value for e in Engine],
                       help="how members train (default: the config's engine, auto)")
    train.add_argument("--ray-address", metavar="ADDR",
                       help="join this Ray cluster ('auto': the one on this machine)")
    train.add_argument("--device", type=_device,
                       help="cpu, cuda, cuda:N or auto (default: the config's device)")
    train.add_argument("--wandb", action="store_true",
                       help="log to Weights & Biases (offline unless logged in)")
    train.add_argument("--tensorboard", nargs="?", const="", metavar="DIR",
                       help="log to TensorBoard event files in DIR (default: RUN_DIR/tensorboard)"
                            "; put it after CONFIG")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_cmd_train)
    evaluate = sub.add_parser("evaluate", help="evaluate (and record) an agent file")
    evaluate.add_argument("agent", help="agent file (a run's elite.safetensors)")
    evaluate.add_argument("--env", help="env id (default: the env the agent was trained on)")
    evaluate.add_argument("--episodes", type=_positive, default=10)
    evaluate.add_argument("--seed", type=int, default=0, help="episode j uses seed + j")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions")
    evaluate.add_argument("--record", metavar="OUT", help="write the episodes to .gif or .mp4")
    evaluate.add_argument("--plot", nargs="?", const="", metavar="PNG",
                          help="satellite env: draw the first episode's timeline to PNG "
                               "(default: <agent>_timeline.png next to the agent file)")
    evaluate.add_argument("--device", type=_device, default="cpu",
                          help="where the agent acts: cpu, cuda, cuda:N or auto")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(func=_cmd_evaluate)
    export = sub.add_parser("export", help="write an agent's policy as a TorchScript or ONNX "
                                           "file that runs without evopop")
    export.add_argument("agent", help="agent file (a run's elite.safetensors)")
    export.add_argument("--format", required=True, choices=[f.value for f in ExportFormat])
    export.add_argument("--out", help="policy file (default: AGENT with .pt or .onnx)")
    export.add_argument("--env", help="env id to record (default: the agent file's env)")
    export.set_defaults(func=_cmd_export)
    sweep = sub.add_parser("sweep", help="compare settings: a grid of config keys x seeds")
    sweep.add_argument("sweep", help="sweep YAML (see configs/sweep_mutations.yaml)")
    sweep.add_argument("--out", help="output directory (default: runs/<sweep name>)")
    sweep.add_argument("--parallel-runs", type=_positive, metavar="N",
                       help="runs in parallel (default: CPU cores)")
    _renamed(sweep, "--workers", "--parallel-runs")
    sweep.add_argument("--backend", choices=["processes", "ray"], default="processes",
                       help="run the sweep's runs in local processes or as Ray tasks")
    sweep.add_argument("--ray-address", metavar="ADDR",
                       help="join this Ray cluster ('auto': the one on this machine)")
    sweep.add_argument("--resume", action="store_true", help="skip finished runs, continue others")
    sweep.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    sweep.set_defaults(func=_cmd_sweep)
    plot = sub.add_parser("plot", help="draw a run's fitness, hyperparameters and lineage")
    plot.add_argument("run_dir", help="a run directory written by evopop train")
    plot.add_argument("--out", help="where to write the PNGs (default: RUN_DIR/plots)")
    plot.set_defaults(func=_cmd_plot)
    envs = sub.add_parser("envs", help="list registered environments and wrappers")
    envs.set_defaults(func=_cmd_envs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return _run(build_parser().parse_args(argv))


def console() -> NoReturn:
    """The `evopop` command: `main`, and after `train` an exit without the interpreter's
    teardown of every module (0.4-0.6 s with torch and envpool loaded, 2 % of a W1 run). By then
    `train` has closed what it wrote (atomic files, pools, trackers); the exit handlers still
    run (Ray, multiprocessing, logging), and the standard streams are flushed."""
    args = build_parser().parse_args()
    code = _run(args)
    if args.func is _cmd_train:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except KeyboardInterrupt as err:
        print(f"evopop: {err or 'interrupted'}", file=sys.stderr)
        return 130
    except UserError as err:
        if args.debug:
            traceback.print_exc()
        print(f"evopop: {one_line(str(err))}", file=sys.stderr)
        return EXIT_USAGE
    except PopulationDiverged as err:
        print(f"evopop: run failed: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        if args.debug:
            raise
        print(f"evopop: internal error: {type(err).__name__}: {err} (rerun with --debug)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    console()
