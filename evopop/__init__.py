"""evopop: population-based evolutionary hyperparameter optimisation of recurrent PPO agents.

The public API is these few names, loaded on first use (so `import evopop` stays fast):

- `load_config(path, overrides)`: a validated `RunConfig` from YAML;
- `run_training(config, run_dir)`: what `evopop train` runs (logs, checkpoints, resume);
- `Population(config)`: a custom loop, one generation at a time (`train`, `select`, `mutate`,
  `elite`);
- `make_vec_env`, `evaluate`, `load_agent`, `save_agent`: run, score and keep an agent;
- `export_agent(agent_or_path, fmt, out)`: its policy as a TorchScript or ONNX file.
"""

from __future__ import annotations

from evopop.lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "load_config": "evopop.config",
    "RunConfig": "evopop.config",
    "run_training": "evopop.training",
    "Population": "evopop.evolution.loop",
    "make_vec_env": "evopop.envs",
    "evaluate": "evopop.agents.evaluation",
    "load_agent": "evopop.agents.checkpoint",
    "save_agent": "evopop.agents.checkpoint",
    "export_agent": "evopop.export",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return [*globals(), *__all__]
