"""Training P members of one spec as one batched computation (DESIGN.md §7).

`stack(agents)` copies weights and Adam state into stacked tensors; `batched_ppo_update` and
`policy_step` run all members at once; `unstack` writes the results back into each `Agent`, whose
files keep their format. `group_members` says which members can stack together.
"""

from evopop.batched.population import StackedPopulation, group_members, stack, unstack
from evopop.batched.ppo import batched_ppo_update, recompute_log_probs
from evopop.batched.step import StepOutput, draw_sde_noise, policy_step, reset_states

__all__ = [
    "StackedPopulation", "StepOutput", "batched_ppo_update", "draw_sde_noise", "group_members",
    "policy_step", "recompute_log_probs", "reset_states", "stack", "unstack",
]
