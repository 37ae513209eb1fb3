"""Members, cloning, and the whole-run checkpoint that makes resume exact.

A member is plain data: an agent (spec, hyperparameters, weights, optimizer, normalisers) plus
lineage fields. The run checkpoint holds every member and the loop counters in one safetensors
file; no RNG state needs saving because every random stream is derived from (seed, generation,
member) — see `evopop.seeding.derive_seed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evopop.agents.agent import Agent
from evopop.agents.checkpoint import (
    FORMAT_VERSION,
    AgentFileError,
    agent_from_bytes,
    agent_from_parts,
    agent_metadata,
    agent_tensors,
    agent_to_bytes,
    atomic_write_bytes,
    pack,
    read_file,
    unpack,
    unpack_metadata,
)
from evopop.agents.file_schema import validate_header
from evopop.agents.spec import NetSpec, PPOParams
from evopop.evolution.checkpoint_schema import RUN_FORMAT, validate_run_header


@dataclass
class Member:
    """One agent of the population and where it came from.

    The agent (`source`) is kept as the bytes workers exchange until something asks for the
    `Agent` itself (mutation, migration, callers): sending, keeping, copying, checkpointing and
    recording a member need no network (the planner still builds one per task to group them).
    Rebuilding every member from its result and again for each clone took about 0.1 s of each
    P = 16 generation. Once built, the agent is the member's truth (callers may change it in
    place) and `agent_bytes` serialises it afresh."""

    id: int
    parent_id: int | None
    born: int
    source: Agent | bytes
    env_steps: int = 0
    fitness: list[float] = field(default_factory=list)
    mutation: dict[str, Any] | None = None

    @property
    def agent(self) -> Agent:
        """The agent, built from its bytes on first use."""
        if isinstance(self.source, bytes):
            self.source = agent_from_bytes(self.source)
        return self.source

    @property
    def agent_bytes(self) -> bytes:
        """The agent as workers exchange it (`agent_to_bytes`)."""
        return self.source if isinstance(self.source, bytes) else agent_to_bytes(self.source)

    def parts(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """`pack`'s two halves, tensors and header: read from the bytes, or taken from a built
        agent without serialising it only to read it back."""
        if isinstance(self.source, bytes):
            return unpack(self.source)
        return agent_tensors(self.source), agent_metadata(self.source)

    def spec_and_params(self) -> tuple[NetSpec, PPOParams]:
        """The agent's spec and hyperparameters, read from its header while it is bytes."""
        if isinstance(self.source, bytes):
            return validate_header(unpack_metadata(self.source), f"member {self.id}")
        return self.source.spec, self.source.params

    def clone(self, new_id: int, generation: int) -> Member:
        """A copy with its own optimizer state: the same immutable bytes, built apart when
        either is changed."""
        return Member(new_id, self.id, generation, self.agent_bytes, self.env_steps,
                      list(self.fitness))

    def record(self) -> dict[str, Any]:
        """Lineage fields as JSON (everything but the agent's tensors)."""
        return {"id": self.id, "parent_id": self.parent_id, "born": self.born,
                "env_steps": self.env_steps, "fitness": self.fitness, "mutation": self.mutation}


@dataclass
class LoopState:
    """Everything the generation loop needs to continue: members and counters."""

    generation: int
    next_id: int
    members: list[Member]
    total_env_steps: int = 0
    wall_s: float = 0.0
    best_fitness: float = float("-inf")
    elite_history: list[float] = field(default_factory=list)
    target_reached: bool = False
    finished: bool = False
    # the workers batched groups are cut into chunks for (`evopop.evolution.plan`): settled
    # when the run starts and kept, so a resume with other workers rounds as the run began
    batch_width: int | None = None

    def counters(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "generation", "next_id", "total_env_steps", "wall_s", "best_fitness",
            "elite_history", "target_reached", "finished", "batch_width")}


def save_state(path: Path, state: LoopState) -> None:
    """Writes the whole run atomically: a kill at any moment leaves the previous generation's."""
    tensors, members = {}, []
    for slot, member in enumerate(state.members):
        own, header = member.parts()
        tensors.update({f"m{slot}.{key}": value for key, value in own.items()})
        members.append({**member.record(), "agent": header})
    meta = {"format": RUN_FORMAT, "format_version": FORMAT_VERSION, **state.counters(),
            "members": members}
    atomic_write_bytes(path, pack(tensors, meta))


def load_state(path: Path) -> LoopState:
    """The run a checkpoint holds, validated (`checkpoint_schema`) before any member is built;
    each member's agent is checked as an agent file is."""
    tensors, meta = unpack(read_file(path), str(path))
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
        raise AgentFileError(f"{path} is not an evopop run checkpoint")
    run = validate_run_header(meta, tensors, str(path))
    members = []
    for slot, entry in enumerate(run.members):
        prefix = f"m{slot}."
        own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        agent = agent_from_parts(own, entry.agent, source=f"{path} member {slot}")
        members.append(Member(entry.id, entry.parent_id, entry.born, agent, entry.env_steps,
                              list(entry.fitness), entry.mutation))
    counters = run.model_dump(exclude={"format", "format_version", "members"})
    return LoopState(members=members, **counters)
