"""Stacking members into one `StackedPopulation` and writing the results back into each `Agent`.

Only the network weights and Adam's moments and step counts are stacked; normaliser statistics,
hyperparameters and everything else stay on the member's `Agent`, so after `unstack` each member
saves and loads exactly as if it had been trained on its own.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch

from evopop.agents.agent import Agent
from evopop.agents.spaces import PolicyHead
from evopop.batched.adam import StackedAdam
from evopop.batched.network import StackedNet
from evopop.batched.padding import crop, gate_blocks, place, split_by_cost, width_free


@dataclass
class StackedPopulation:
    """P members of one spec: stacked network, stacked Adam, the shared policy head, and the
    `[P, D]` gradient buffer that clipping and Adam read (laid out as `net.flat`)."""

    net: StackedNet
    adam: StackedAdam
    head: PolicyHead
    grad: torch.Tensor
    grad_views: list[torch.Tensor]  # `grad` per parameter, in `net.params` order

    @property
    def size(self) -> int:
        return self.net.size

    @property
    def param_list(self) -> list[torch.Tensor]:
        return list(self.net.params.values())

    def gather_grads(self, grads: Sequence[torch.Tensor]) -> torch.Tensor:
        """Copies per-parameter gradients (in `param_list` order) into `grad` and returns it:
        one strided copy each (a matmul's weight gradient comes transposed, which `cat` would
        first have to make contiguous), into views made once per stack, not per round."""
        for view, tensor in zip(self.grad_views, grads, strict=True):
            view.copy_(tensor)
        return self.grad


def batch_key(agent: Agent, pad_widths: bool = True) -> Hashable:
    """What must be equal for members to stack: architecture, widths (unless they pad:
    `evopop.batched.padding`), action head, Adam's constants. Float hyperparameters and
    structural ones (rollout length, minibatch size, epochs, sequence length) may differ: the
    batched update pads and masks them."""
    group = agent.optimizer.param_groups[0]
    spec = width_free(agent.spec) if pad_widths else agent.spec
    return (spec, agent.encoder.dim, agent.action_spec, tuple(group["betas"]), group["eps"])


def structure_key(agent: Agent) -> Hashable:
    """The structural hyperparameters, which set the number and size of a member's minibatches."""
    p = agent.params
    return (p.learn_step, p.batch_size, p.update_epochs, p.max_seq_len)


def group_members(agents: list[Agent], by_structure: bool = True,
                  pad_widths: bool = True) -> list[list[int]]:
    """Indices of the members to train as one batched computation, in first-seen order.
    Without `pad_widths` members of other widths are grouped apart (a group whose members run
    their own updates on its collection's states needs them at their own widths).

    Members with different structural hyperparameters can stack (the update pads and masks),
    but padding a member's minibatches to another's and computing members whose schedule has
    ended costs more than it saves: with batch sizes (128, 256, 256, 512) one padded stack took
    1.6x the member-by-member time and grouping by structure 1.1x (benchmarks/batched_update.py).
    So by default they are grouped apart too. Members of other widths are cut where padding
    would cost too much arithmetic (`padding.split_by_cost`). A member with Adam weight decay
    (only an agent file can carry it) trains alone: the stacked Adam has none.
    """
    groups: dict[Hashable, list[int]] = {}
    for i, agent in enumerate(agents):
        key = ("alone", i) if _decays(agent) else \
            (batch_key(agent, pad_widths), structure_key(agent) if by_structure else None)
        groups.setdefault(key, []).append(i)
    cut = [part for group in groups.values()
           for part in split_by_cost(group, [agents[i].spec.hidden_size for i in group])]
    return sorted(cut, key=lambda g: g[0])


def _decays(agent: Agent) -> bool:
    return bool(agent.optimizer.param_groups[0]["weight_decay"])


def stack(agents: list[Agent], like: StackedPopulation | None = None) -> StackedPopulation:
    """Copies the members' weights and Adam state into one stacked population, at their widest
    widths or at `like`'s (a subset of its members, whose collected states have its widths)."""
    if any(_decays(a) for a in agents):
        raise ValueError("the stacked Adam has no weight decay; train such members alone")
    keys = {batch_key(a) for a in agents}
    if len(keys) != 1:
        raise ValueError("members differ in spec, action space or Adam constants; "
                         "stack each of group_members(agents) separately")
    net = StackedNet.stack([a.net for a in agents], like.net if like else None)
    group = agents[0].optimizer.param_groups[0]
    adam = StackedAdam.zeros(net.flat, tuple(group["betas"]), group["eps"])
    moments = _moment_views(net, adam)
    for p, agent in enumerate(agents):
        _read_adam(adam, moments, p, agent)
    grad = torch.empty_like(net.flat)
    return StackedPopulation(net, adam, PolicyHead(net.action, net.sde_features), grad,
                             list(net.layout.views(grad).values()))


def unstack(pop: StackedPopulation, agents: list[Agent]) -> None:
    """Writes each member's weights and Adam state back into its own `Agent`, in place."""
    pop.net.write_back([a.net for a in agents])
    moments = _moment_views(pop.net, pop.adam)
    for p, agent in enumerate(agents):
        _write_adam(pop.adam, moments, p, agent)


_Moments = list[tuple[torch.Tensor, torch.Tensor, int]]  # (exp_avg, exp_avg_sq, blocks)


def _moment_views(net: StackedNet, adam: StackedAdam) -> _Moments:
    """Adam's `[P, D]` moments as `[P, *shape]` views, in the member's parameter order, with
    each parameter's gate blocks (`padding`)."""
    firsts, seconds = net.layout.views(adam.exp_avg), net.layout.views(adam.exp_avg_sq)
    return [(firsts[name], seconds[name], gate_blocks(name, net.spec))
            for name in net.layout.shapes]


def _read_adam(adam: StackedAdam, moments: _Moments, p: int, agent: Agent) -> None:
    steps = set()
    with torch.no_grad():
        for param, (m, v, blocks) in zip(agent.net.parameters(), moments, strict=True):
            state = agent.optimizer.state.get(param)
            if state:
                place(m[p], state["exp_avg"], blocks)
                place(v[p], state["exp_avg_sq"], blocks)
                steps.add(int(state["step"]))
            else:
                steps.add(0)
    if len(steps) != 1:
        raise ValueError(f"member {p}: parameters have different Adam step counts {steps}")
    adam.steps[p] = steps.pop()


def _write_adam(adam: StackedAdam, moments: _Moments, p: int, agent: Agent) -> None:
    count = int(adam.steps[p])
    if count == 0:
        return  # never stepped: the member's optimizer keeps its empty state
    with torch.no_grad():
        for param, (m, v, blocks) in zip(agent.net.parameters(), moments, strict=True):
            shape = tuple(param.shape)
            agent.optimizer.state[param] = {
                "step": torch.tensor(float(count), dtype=torch.float32, device=param.device),
                "exp_avg": crop(m[p], shape, blocks).clone(),
                "exp_avg_sq": crop(v[p], shape, blocks).clone(),
            }

