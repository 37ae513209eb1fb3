"""The final elite on fresh episodes: the return a run reports besides its selection fitness.

The elite won a contest on its evaluation (or training) episodes, so its fitness is biased up by
the luck that made it win; episodes that selection never saw are not. Their seeds start at a
per-run derived seed moved past every generation's evaluation seeds (`disjoint_start`).
"""

from __future__ import annotations

from evopop.agents.agent import Agent
from evopop.agents.evaluation import eval_env_spec, evaluate
from evopop.envs.make import make_vec_env
from evopop.evolution.fitness import disjoint_start
from evopop.evolution.loop import Stream, eval_seed
from evopop.evolution.settings import RunConfig
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


def fresh_return(config: RunConfig, agent: Agent, generations: int) -> FreshReturn | None:
    """`agent` (the final elite) on `final_eval_episodes` fresh deterministic episodes; None
    when the config asks for none."""
    episodes = config.final_eval_episodes
    if episodes == 0:
        return None
    first = fresh_first_seed(config, generations)
    envs = make_vec_env(eval_env_spec(config.env, episodes))
    try:
        result = evaluate(agent, envs, episodes, first)
    finally:
        envs.close()
    return FreshReturn(result.mean, result.std, episodes, first)
