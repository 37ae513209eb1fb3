"""The final elite on fresh episodes: the return a run reports besides its selection fitness.

The elite won a contest on its evaluation (or training) episodes, so its fitness is biased up by
the luck that made it win; episodes that selection never saw are not. Their seeds start at a
per-run derived seed moved past every generation's evaluation seeds (`disjoint_start`).
"""

from __future__ import annotations

import numpy as np

from evopop.agents.evaluation import eval_env_spec
from evopop.evolution.fitness import FitnessMode, disjoint_start
from evopop.evolution.loop import Stream, eval_seed
from evopop.evolution.settings import RunConfig
from evopop.evolution.task import TaskResult, TrainTask
from evopop.records import FreshReturn
from evopop.seeding import derive_seed


def eval_seed_ranges(config: RunConfig, generations: int) -> list[tuple[int, int]]:
    """`[first, end)` of every generation's evaluation seeds."""
    starts = (eval_seed(config, g) for g in range(generations))
    return [(s, s + config.eval_episodes) for s in starts]


def fresh_first_seed(config: RunConfig, generations: int) -> int:
    """The first of `final_eval_episodes` consecutive seeds, none an evaluation seed of the
    run's `generations` generations."""
    return disjoint_start(derive_seed(config.seed, Stream.FRESH), config.final_eval_episodes,
                          eval_seed_ranges(config, generations))


def fresh_task(config: RunConfig, elite: bytes, generations: int,
               device: str) -> TrainTask | None:
    """The final elite (agent file bytes) on `final_eval_episodes` fresh deterministic
    episodes, as a member task that trains nothing; None when the config asks for none. It runs
    where members run: a worker has the env library loaded, where this process would import it
    just for these episodes (0.8 s for envpool)."""
    episodes = config.final_eval_episodes
    if episodes == 0:
        return None
    return TrainTask(agent=elite, env=config.env, eval_env=eval_env_spec(config.env, episodes),
                     ray=config.ray, steps=0, seed=0, schedule=(0, 1), eval_episodes=episodes,
                     eval_seed=fresh_first_seed(config, generations), device=device,
                     fitness=FitnessMode.EVAL)


def fresh_return(task: TrainTask, result: TaskResult) -> FreshReturn:
    """`fresh_task`'s result as the run reports it: the mean and std of its returns."""
    returns = np.asarray(result.eval_returns, np.float64)
    return FreshReturn(float(returns.mean()), float(returns.std()), task.eval_episodes,
                       task.eval_seed)
