"""Few-seed statistics of a sweep, after rliable (Agarwal et al. 2021, "Deep RL at the Edge of
the Statistical Precipice"): the interquartile mean (IQM) of a setting's per-run scores, 95 %
percentile stratified-bootstrap intervals, and the probability of improvement.

One sweep is one task, so the stratified bootstrap resamples each setting's runs on their own
(scipy.stats.bootstrap, `paired=False`), which is what rliable's StratifiedBootstrap and
StratifiedIndependentBootstrap do for a single task. rliable itself is not used: 1.2.0 (its
latest release) caps `arch<8`, and arch 7 fails to import under pandas 3; and its bootstrap
draws from numpy's global generator whatever `random_state` it is given, so its intervals
cannot be seeded. Point estimates need numpy only; intervals need scipy (the `sweep` extra).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed: the same results give the same summary, byte for byte
TRIM = 0.25  # IQM: the mean of the middle half (a quarter trimmed at each end)
TIED_BAND = (0.25, 0.75)  # P(improvement) inside this band: too close to call
INSTALL_HINT = "pip install scipy (evopop's `sweep` extra)"


class Verdict(str, Enum):
    """A setting against the sweep's best (rank 1) setting; see `verdict`."""

    BEST = "best"
    TIED = "cannot be told apart"
    WORSE = "worse"
    BETTER = "better"


@dataclass(frozen=True)
class Interval:
    """A 95 % confidence interval."""

    low: float
    high: float


def iqm(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean of the middle half along `axis`: int(n/4) values cut at each end (as
    scipy.stats.trim_mean(x, 0.25), which rliable's aggregate_iqm calls). Robust to a stray
    seed, unlike the mean, and less wasteful than the median."""
    ordered = np.sort(np.moveaxis(np.asarray(scores, np.float64), axis, -1), axis=-1)
    n = ordered.shape[-1]
    cut = int(n * TRIM)
    return ordered[..., cut:n - cut].mean(axis=-1)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(X > Y): the chance that a random run of X scores above a random run of Y, ties counted
    half (the Mann-Whitney U statistic over n·m, as rliable computes it for one task)."""
    a = np.moveaxis(np.asarray(x, np.float64), axis, -1)[..., :, None]
    b = np.moveaxis(np.asarray(y, np.float64), axis, -1)[..., None, :]
    return ((a > b) + 0.5 * (a == b)).mean(axis=(-2, -1))


def bootstrap_available() -> bool:
    """Whether scipy (the `sweep` extra) is importable."""
    try:
        import scipy.stats  # noqa: F401
    except ImportError:
        return False
    return True


def _interval(samples: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray],
              stream: int) -> Interval | None:
    """Percentile bootstrap interval, every sample resampled on its own from a generator seeded
    by (BOOTSTRAP_SEED, stream); None when a sample has fewer than two runs.

    A diverged run scores -inf; where the interval's end falls among -inf resamples, numpy's
    interpolation gives nan, reported as -inf (an end below every finite score)."""
    from scipy.stats import bootstrap

    if min(len(s) for s in samples) < 2:
        return None
    rng = np.random.default_rng([BOOTSTRAP_SEED, stream])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = bootstrap(samples, statistic, n_resamples=RESAMPLES, method="percentile",
                           confidence_level=CONFIDENCE, vectorized=True, paired=False,
                           axis=-1, rng=rng)
    ends = (float(result.confidence_interval.low), float(result.confidence_interval.high))
    low, high = (-math.inf if math.isnan(v) else v for v in ends)
    return Interval(low, high)


def iqm_interval(scores: Sequence[float], stream: int) -> Interval | None:
    """95 % interval of the IQM of one setting's runs."""
    return _interval((np.asarray(scores, np.float64),), iqm, stream)


def improvement_interval(x: Sequence[float], y: Sequence[float], stream: int) -> Interval | None:
    """95 % interval of P(X > Y), the runs of X and of Y resampled independently."""
    return _interval((np.asarray(x, np.float64), np.asarray(y, np.float64)),
                     probability_of_improvement, stream)


def verdict(p: float, interval: Interval | None) -> Verdict | None:
    """A setting against the best from p = P(setting > best) and its interval: worse (better)
    only when p < 0.25 (p > 0.75) and the interval lies wholly below (above) 0.5; otherwise the
    two cannot be told apart. Both are needed: with few seeds a lopsided p can be luck (the
    interval then reaches 0.5), and a consistent but small edge is not worth a verdict (Bouthillier
    et al. 2021 call P(A > B) >= 0.75 a meaningful improvement). None without an interval."""
    if interval is None:
        return None
    if p < TIED_BAND[0] and interval.high < 0.5:
        return Verdict.WORSE
    if p > TIED_BAND[1] and interval.low > 0.5:
        return Verdict.BETTER
    return Verdict.TIED
