"""A sweep's runs as Ray tasks, scheduled over the cluster (`evopop sweep --backend ray`).

Each run is one task reserving its config's `ray.num_cpus_per_member` CPUs (plus its env
workers' when they run on Ray) and training its members one after another, as a local sweep
worker does. Run directories must be on storage every node sees (the
task writes its checkpoints there); a task Ray retries after a node failure continues its run
from the last checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evopop.config import RunConfig
from evopop.execution.cluster import connect, import_ray
from evopop.sweep.spec import PlannedRun

OnDone = Callable[[PlannedRun, dict[str, Any]], None]


def _run_task(config: RunConfig, run_dir: str) -> dict[str, Any]:
    """On a Ray worker. A retried task finds its run finished (it returns the summary) or
    checkpointed (it continues the run) rather than starting over."""
    import torch

    from evopop.rundir import RunDir
    from evopop.sweep.run import RunStatus, execute_run, run_status

    torch.set_num_threads(1)
    status = run_status(Path(run_dir))
    if status is RunStatus.FINISHED:
        return RunDir(Path(run_dir)).read_summary()
    return execute_run(config, Path(run_dir), status is RunStatus.STARTED)


def run_on_ray(todo: Sequence[tuple[PlannedRun, Path]], address: str | None,
               on_done: OnDone) -> None:
    """Runs every (run, run dir) as a Ray task reserving what its config's `ray` section says;
    `on_done` gets each summary as it arrives."""
    ray = import_ray()
    owns = connect(address)
    runs = {}
    for run, run_dir in todo:
        need = run.config.ray
        task = ray.remote(num_cpus=need.num_cpus_per_member + run.config.ray_env_worker_cpus(),
                          num_gpus=need.num_gpus_per_member)(_run_task)
        runs[task.remote(run.config, str(run_dir.resolve()))] = run
    pending = list(runs)
    try:
        while pending:
            [ready], pending = ray.wait(pending, num_returns=1)
            on_done(runs[ready], ray.get(ready))
    except BaseException:
        for ref in pending:  # Ctrl-C or a failed run: stop the others at their last checkpoint
            ray.cancel(ref)
        raise
    finally:
        if owns:
            ray.shutdown()
