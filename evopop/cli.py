"""`evopop` command line. Every user mistake ends in one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from evopop.errors import UserError

EXIT_USAGE = 2


class CliError(UserError):
    """A problem to report in one line (exit code 2)."""


def _parse_sets(items: Sequence[str]) -> dict[str, Any]:
    overrides = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CliError(f"--set expects key=value, got {item!r}")
        overrides[key] = yaml.safe_load(raw)
    return overrides


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from evopop.config import load_config
    from evopop.training import train_single

    overrides = _parse_sets(args.set)
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.steps is not None:
        overrides["total_steps"] = args.steps
    config = load_config(args.config, overrides)
    torch.set_num_threads(1)
    summary = train_single(config, Path(args.run_dir), progress=not args.quiet)
    print(json.dumps(summary))
    return 0


def _cmd_envs(args: argparse.Namespace) -> int:
    from evopop.envs import env_ids
    from evopop.wrappers import WrapperKind

    print("environments:", *env_ids(), sep="\n  ")
    print("wrappers:", *(k.value for k in WrapperKind), sep="\n  ")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evopop", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train from a YAML config")
    train.add_argument("config", help="path to a YAML run config (see configs/)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set ppo.lr=3e-4")
    train.add_argument("--run-dir", default="runs/latest", help="where to write results")
    train.add_argument("--seed", type=int, help="override the config's seed")
    train.add_argument("--steps", type=int, help="override total_steps")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_cmd_train)
    envs = sub.add_parser("envs", help="list registered environments and wrappers")
    envs.set_defaults(func=_cmd_envs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("evopop: interrupted", file=sys.stderr)
        return 130
    except UserError as err:
        if args.debug:
            traceback.print_exc()
        print(f"evopop: {err}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:
        if args.debug:
            raise
        print(f"evopop: internal error: {type(err).__name__}: {err} (rerun with --debug)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
