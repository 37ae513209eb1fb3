"""Per-episode metrics an env can report, and their aggregation into run logs.

An env that wants more than the return logged (the satellite: survival, battery, orbits...) puts
a flat dict of floats (or bools) under `info[EPISODE_METRICS_KEY]` on the step that ends an
episode. Floats, because Gymnasium's vector envs batch each key into an array typed by the first
env that reports it: an int there would truncate another env's float.
Collection and evaluation pick it up from the vector env's `final_info`, and each generation's
log line holds the mean of every metric. NaN means "does not apply to this episode" (e.g. orbits
completed by a failed episode, for one that survived), so means skip NaNs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

EPISODE_METRICS_KEY = "episode_metrics"

EpisodeMetrics = dict[str, float]


def final_metrics(infos: Mapping[str, Any], index: int) -> EpisodeMetrics | None:
    """The metrics env `index` reported on the step that ended its episode, if any.

    Gymnasium's vector envs batch a done step's info under `final_info` as arrays with a
    `_name` mask per key; this undoes that for one env.
    """
    final = infos.get("final_info")
    if not final or EPISODE_METRICS_KEY not in final:
        return None
    mask = final.get(f"_{EPISODE_METRICS_KEY}")
    if mask is None or not mask[index]:
        return None
    batched = final[EPISODE_METRICS_KEY]
    return {
        name: float(values[index])
        for name, values in batched.items()
        if not name.startswith("_") and batched.get(f"_{name}", mask)[index]
    }


def mean_metrics(episodes: Iterable[Mapping[str, float]]) -> dict[str, float | None]:
    """Mean of each metric over the episodes that define it; None where none does (JSON-safe)."""
    columns: dict[str, list[float]] = {}
    for episode in episodes:
        for name, value in episode.items():
            columns.setdefault(name, []).append(float(value))
    means: dict[str, float | None] = {}
    for name, values in columns.items():
        defined = [v for v in values if not math.isnan(v)]
        means[name] = float(np.mean(defined)) if defined else None
    return means
