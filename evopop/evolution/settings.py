"""A run's settings: the whole validated config (`RunConfig`) and its evolution section.

These frozen, validated models are the runtime types too: the generation loop and the mutation
operators take them whole, so a setting is declared, checked and documented in one place
(`evopop.config` only reads YAML into them and words the errors).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator

from evopop.agents.device import check_device_name
from evopop.agents.spec import MAX_LAYERS, MAX_WIDTH, Activation, NetSpec, PPOParams
from evopop.envs.spec import EnvSpec, Vectorization
from evopop.evolution.engine import Engine
from evopop.evolution.fitness import FitnessMode
from evopop.evolution.selection_settings import (
    MultiFrequencySelection,
    SelectionKind,
    SelectionSettings,
    TournamentSelection,
    TruncationSelection,
)
from evopop.evolution.space import DEFAULT_HP_SPACE, DEFAULT_PERTURB_FACTOR, HPRange, HPSpace
from evopop.execution.cluster import RaySettings
from evopop.execution.placement import Placement
from evopop.execution.pool import default_workers

MAX_POPULATION = 1024
"""Most members (and members in parallel) a config may ask for."""


class MutationKind(str, Enum):
    """What a mutation changed; NONE also records a mutation that found nothing to change."""

    NONE = "none"
    ARCHITECTURE = "architecture"
    NEW_LAYER = "new_layer"
    PARAMETERS = "parameters"
    ACTIVATION = "activation"
    HYPERPARAMETER = "hyperparameter"


def _to_space(value: Any) -> HPSpace:
    """`null` is the default space; a mapping of ranges (config dicts or `HPRange`s) is
    checked against the PPO hyperparameters it names."""
    if value is None:
        return DEFAULT_HP_SPACE
    if isinstance(value, HPSpace):
        return value
    if isinstance(value, Mapping):
        if all(isinstance(r, HPRange) for r in value.values()):
            return HPSpace(value)
        if all(isinstance(r, Mapping) for r in value.values()):
            return HPSpace.from_dict(value)
    raise ValueError("hp_space must map hyperparameter names to {low, high[, log, kind]}")


SpaceField = Annotated[HPSpace, BeforeValidator(_to_space),
                       PlainSerializer(lambda space: space.to_dict(), return_type=dict)]


class MutationSettings(BaseModel):
    """Relative probabilities of the mutation kinds and the limits they respect.

    The six probabilities are relative weights: normalised by their sum, exactly one kind is
    drawn per non-elite member and generation (so `none=0.5, parameters=0.5` and `none=1,
    parameters=1` behave alike). Activation switches default to 0: a new nonlinearity changes
    the learned function wholesale, which rarely pays off in RL.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True,
                              allow_inf_nan=False)

    none: float = Field(0.4, ge=0.0, le=1.0, description="probability of no mutation")
    architecture: float = Field(0.2, ge=0.0, le=1.0, description="head nodes / hidden size")
    new_layer: float = Field(0.2, ge=0.0, le=1.0, description="add a head layer")
    parameters: float = Field(0.2, ge=0.0, le=1.0, description="Gaussian weight noise")
    activation: float = Field(0.0, ge=0.0, le=1.0, description="switch the activation")
    hyperparameter: float = Field(0.2, ge=0.0, le=1.0, description="perturb one RL hp")
    mutation_sd: float = Field(0.1, gt=0.0, allow_inf_nan=False,
                               description="relative std of weight noise")
    activations: tuple[Activation, ...] = Field(
        tuple(Activation), min_length=1, description="what an activation mutation picks from")
    min_nodes: int = Field(8, ge=1, description="fewest nodes a head layer may shrink to")
    max_nodes: int = Field(512, ge=1, le=MAX_WIDTH,
                           description="most nodes a head layer may grow to")
    max_layers: int = Field(4, ge=1, le=MAX_LAYERS, description="most head layers")
    min_hidden: int = Field(8, ge=1, description="smallest recurrent hidden size")
    max_hidden: int = Field(512, ge=1, le=MAX_WIDTH,
                            description="largest recurrent hidden size")
    node_steps: tuple[Annotated[int, Field(ge=1, le=MAX_WIDTH)], ...] = Field(
        (16, 32, 64), min_length=1, description="sizes an architecture mutation adds or removes")
    hp_space: SpaceField = Field(
        DEFAULT_HP_SPACE,
        description="bounds per hyperparameter, e.g. {lr: {low: 1e-5, high: 1e-2, log: true}}")
    hp_factor: float = Field(DEFAULT_PERTURB_FACTOR, gt=0.0, allow_inf_nan=False,
                             description="relative size of an hp perturbation")

    @model_validator(mode="after")
    def _valid(self) -> MutationSettings:
        if sum(getattr(self, kind.value) for kind in MutationKind) <= 0:
            raise ValueError("at least one mutation probability must be > 0")
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"need min_nodes <= max_nodes, got {self.min_nodes}..{self.max_nodes}")
        if self.min_hidden > self.max_hidden:
            raise ValueError(f"need min_hidden <= max_hidden, got "
                             f"{self.min_hidden}..{self.max_hidden}")
        if self.hyperparameter > 0 and not self.hp_space:
            raise ValueError("hyperparameter mutations are enabled but hp_space is empty")
        return self

    def probabilities(self) -> np.ndarray:
        """Normalised probability of each `MutationKind`, in enum order."""
        weights = np.array([getattr(self, kind.value) for kind in MutationKind], np.float64)
        return weights / weights.sum()


NO_MUTATION = MutationSettings(**{kind.value: float(kind is MutationKind.NONE)
                                  for kind in MutationKind})
"""Members pass on unchanged (a population of one, or selection alone)."""


LEGACY_TOURNAMENT_KEYS = {"tournament_size": "size", "elitism": "elitism"}
"""Keys of configs written before `selection`, and their place in a tournament's settings."""


class EvolutionConfig(BaseModel):
    """The population and its selection; absent for single-agent training."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    population_size: int = Field(4, ge=1, le=MAX_POPULATION, description="members")
    selection: SelectionSettings = Field(
        default_factory=TournamentSelection, description="how the next generation is made: "
        "tournament, truncation or multi_frequency (`kind`, or the name alone for its defaults)")
    evo_steps: int = Field(10_000, ge=1, le=10**12,
                           description="env steps per member per generation")
    target: float | None = Field(None, allow_inf_nan=False,
                                 description="stop when the elite's fitness reaches it")
    random_init_hp: bool = Field(False, description="draw initial hps within the hp space")
    mutation: MutationSettings = Field(default_factory=MutationSettings,
                                       description="mutation kinds, probabilities and limits")

    @model_validator(mode="before")
    @classmethod
    def _legacy_tournament_keys(cls, data: Any) -> Any:
        """`tournament_size` / `elitism` (configs before `selection`) mean a tournament."""
        if not isinstance(data, dict):
            return data
        legacy = {new: data[old] for old, new in LEGACY_TOURNAMENT_KEYS.items() if old in data}
        if not legacy:
            return data
        if "selection" in data:
            old = next(k for k in LEGACY_TOURNAMENT_KEYS if k in data)
            raise ValueError(f"'{old}' is the old spelling of "
                             f"selection.{LEGACY_TOURNAMENT_KEYS[old]}; give selection alone")
        rest = {k: v for k, v in data.items() if k not in LEGACY_TOURNAMENT_KEYS}
        return {**rest, "selection": {"kind": SelectionKind.TOURNAMENT.value, **legacy}}

    @model_validator(mode="after")
    def _selection_fits(self) -> EvolutionConfig:
        selection, size = self.selection, self.population_size
        if isinstance(selection, TournamentSelection) and selection.size > size:
            raise ValueError(f"the tournament (selection.size, formerly tournament_size) of "
                             f"{selection.size} is larger than population_size ({size})")
        if isinstance(selection, TruncationSelection) and size < 2:
            raise ValueError("truncation selection needs population_size >= 2")
        if isinstance(selection, MultiFrequencySelection):
            selection.sub_population_sizes(size)
        return self


def _tensorboard_setting(value: Any) -> bool | str:
    """`tensorboard`: on (true), off (false), or the directory of the event files."""
    if isinstance(value, bool) or (isinstance(value, str) and value and "\0" not in value):
        return value
    raise ValueError(f"expected true, false or a directory, got {value!r}")


POINTS_PER_SINGLE_RUN = 20
"""A single agent (a population of one) is evaluated and logged about this often."""


class RunConfig(BaseModel):
    """A training run: env, network, PPO hyperparameters, budget and optional evolution.

    The generation loop takes it whole; `evopop.config` reads it from YAML.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    env: EnvSpec = Field(description="the environment and its vectorisation")
    net: NetSpec = Field(default_factory=NetSpec, description="the network architecture")
    ppo: PPOParams = Field(default_factory=PPOParams, description="PPO hyperparameters")
    max_steps: int = Field(100_000, ge=1, le=10**12,
                           description="env steps per agent (per member)")
    eval_episodes: int = Field(
        32, ge=1, le=100_000,
        description="deterministic episodes each member is evaluated on per generation "
        "(the same episodes for every member; their mean return is its fitness under "
        "fitness: eval; 32 was chosen by benchmarks/fitness_study.py, see Fitness)")
    fitness: FitnessMode = Field(
        FitnessMode.EVAL, description="eval (mean return of the eval_episodes) or train (mean "
        "return of the member's last 20 training episodes of the generation, no extra env "
        "steps, but it picks the best member less often; evaluated as eval when none ended)")
    final_eval_episodes: int = Field(
        50, ge=0, le=100_000,
        description="fresh deterministic episodes (seeds disjoint from every evaluation seed) "
        "the final elite is played on for summary.json; 0: none")
    seed: int = Field(0, ge=0, le=2**63 - 1,
                      description="the one seed every random stream derives from")
    evolution: EvolutionConfig | None = Field(
        None, description="the population; absent for single-agent training")
    backend: Placement = Field(Placement.PROCESSES,
                         description="where members train: local, processes or ray")
    parallel_members: int | None = Field(
        None, ge=1, le=MAX_POPULATION,
        description="members training at once (default: cores; ray: what fits)")
    ray: RaySettings = Field(default_factory=lambda: RaySettings(),
                             description="the Ray cluster and what each member reserves on it")
    device: Annotated[str, BeforeValidator(check_device_name)] = Field(
        "cpu", description="where members learn, act and are evaluated: cpu, cuda, cuda:N or "
        "auto (cuda when torch sees a GPU); results are bit-identical on cpu only")
    engine: Engine = Field(
        Engine.AUTO, description="how members train: auto (what measured fastest: groups of "
        "stackable members fully batched on a shared env, one by one on async envs), batched "
        "(fully batched on any env), collection (groups batch their collection, each member "
        "its own update: the same result for any number of workers) or per_member (one by one)")
    tensorboard: Annotated[bool | str, BeforeValidator(_tensorboard_setting)] = Field(
        False, description="log each generation to TensorBoard: true (event files in the run "
        "dir's tensorboard/), a directory (relative to the run dir) or false")

    @model_validator(mode="after")
    def _ray_env_workers_have_a_cluster(self) -> RunConfig:
        if (self.env.env_worker_backend is Placement.RAY
                and self.backend is not Placement.RAY and self.ray.address is None):
            raise ValueError("env.env_worker_backend: ray needs backend: ray or a ray.address "
                             "(else every member process would start its own Ray)")
        return self

    def population(self) -> EvolutionConfig:
        """The evolution section, or the one a single agent implies: one member, always the
        elite, never mutated, no target, a generation of about 1/20 of the budget (so its
        learning curve has about 20 evaluated points)."""
        if self.evolution is not None:
            return self.evolution
        rollout = self.ppo.learn_step * self.env.num_envs
        rollouts = math.ceil(self.max_steps / rollout)
        return EvolutionConfig(population_size=1, selection=TournamentSelection(size=1),
                               evo_steps=rollout * max(1, rollouts // POINTS_PER_SINGLE_RUN),
                               target=None, random_init_hp=False, mutation=NO_MUTATION)

    def member_workers(self, parallel_members: int | None = None) -> int | None:
        """Members training at once (`parallel_members` overrides the config's): local workers
        beyond the population would idle; Ray decides for itself when unset (None)."""
        count = parallel_members or self.parallel_members
        if self.backend is Placement.RAY and count is None:
            return None
        return min(count or default_workers(), self.population().population_size)

    def forks_workers(self, parallel_members: int | None = None) -> bool:
        """Whether members train in local worker processes (forked from the fork server)."""
        return (self.backend is Placement.PROCESSES
                and self.member_workers(parallel_members) != 1)

    def ray_env_worker_cpus(self) -> float:
        """CPUs a member's env workers reserve on Ray (0 unless they run there)."""
        env = self.env
        if env.vectorization is not Vectorization.INDEPENDENT or \
                env.env_worker_backend is not Placement.RAY:
            return 0.0
        return (env.env_workers or 1) * self.ray.num_cpus_per_env_worker

    @model_validator(mode="after")
    def _batch_fits_rollout(self) -> RunConfig:
        rollout = self.ppo.learn_step * self.env.num_envs
        if self.ppo.batch_size > rollout:
            raise ValueError(
                f"ppo.batch_size ({self.ppo.batch_size}) is larger than a rollout "
                f"(ppo.learn_step x env.num_envs = {rollout})"
            )
        return self
