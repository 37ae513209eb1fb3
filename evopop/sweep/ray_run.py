"""A sweep's runs as Ray tasks, scheduled over the cluster (`evopop sweep --backend ray`).

Each run is one task reserving `ray.num_cpus_per_member` CPUs and training its members one after
another, as a local sweep worker does. Run directories must be on storage every node sees (the
task writes its checkpoints there); a task Ray retries after a node failure continues its run
from the last checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evopop.config import RunConfig
from evopop.ray_cluster import RayResources, connect, import_ray
from evopop.sweep.spec import PlannedRun

OnDone = Callable[[PlannedRun, dict[str, Any]], None]


def _run_task(config: RunConfig, run_dir: str) -> dict[str, Any]:
    """On a Ray worker: continue the run if it has a checkpoint (e.g. after a retry)."""
    import torch

    from evopop.sweep.run import RunStatus, execute_run, run_status

    torch.set_num_threads(1)
    return execute_run(config, Path(run_dir), run_status(Path(run_dir)) is RunStatus.STARTED)


def run_on_ray(todo: Sequence[tuple[PlannedRun, Path]], resources: RayResources,
               on_done: OnDone) -> None:
    """Runs every (run, run dir) as a Ray task; `on_done` gets each summary as it arrives."""
    ray = import_ray()
    owns = connect(resources.address)
    task = ray.remote(num_cpus=resources.num_cpus_per_member,
                      num_gpus=resources.num_gpus_per_member)(_run_task)
    runs = {task.remote(run.config, str(run_dir.resolve())): run for run, run_dir in todo}
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
