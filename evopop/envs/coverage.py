"""Which env specs envpool can step as one C++ batch, decided from plain data (so `EnvSpec`
can settle `vectorization: auto` while the config is validated, before any env exists)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator, Mapping

from evopop.wrappers import WrapperKind

FAST_BASE_IDS = frozenset({"CartPole-v1", "Pendulum-v1", "MountainCar-v0",
                           "MountainCarContinuous-v0", "Acrobot-v1"})
"""Gymnasium ids whose envpool version is checked against Gymnasium's dynamics."""
_FAST_KWARGS = frozenset({"max_episode_steps"})
_FAST_WRAPPERS = frozenset({WrapperKind.MASK_VELOCITY, WrapperKind.NOISY, WrapperKind.FLICKER})
"""Wrappers `FastVectorEnv` applies to the whole batch; a new kind is uncovered until it does."""


def envpool_installed() -> bool:
    return importlib.util.find_spec("envpool") is not None


def base_id(env_id: str) -> tuple[str, bool]:
    """(Gymnasium base id, whether the id brings a NoVel velocity mask)."""
    from evopop.envs.novel import NOVEL_IDS

    if env_id in NOVEL_IDS:
        return NOVEL_IDS[env_id], True
    return env_id, False


def _wrapper_names(wrappers: Iterable[object]) -> Iterator[str]:
    """The kind names of config entries (`"kind"` or `{kind: {...}}`), read without parsing."""
    for item in wrappers:
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            yield from item


def _uncovered_wrappers(wrappers: Iterable[object]) -> list[str]:
    """Known kinds the batch does not apply; unknown names are left to wrapper parsing, which
    words their error (with a suggestion)."""
    uncovered = {kind.value for kind in WrapperKind if kind not in _FAST_WRAPPERS}
    return sorted(uncovered.intersection(_wrapper_names(wrappers)))


def fast_unsupported(env_id: str, kwargs: Iterable[str], packages: Iterable[str],
                     wrappers: Iterable[object] = ()) -> str | None:
    """Why this env cannot step as a C++ batch, or None when it can."""
    base, _ = base_id(env_id)
    if base not in FAST_BASE_IDS:
        return (f"envpool does not cover {env_id!r} (it covers the NoVel and plain ids of "
                f"{', '.join(sorted(FAST_BASE_IDS))})")
    extra = set(kwargs) - _FAST_KWARGS
    if extra:
        return f"env.kwargs {sorted(extra)} have no envpool equivalent"
    uncovered = _uncovered_wrappers(wrappers)
    if uncovered:
        return f"env.wrappers {uncovered} are not applied by envpool's batch"
    if list(packages):
        return "env.packages do not apply to envpool's envs"
    if not envpool_installed():
        return "envpool is not installed: pip install 'evopop[fast]'"
    return None
