"""Episodes finished during rollouts: what the learner logs, wherever the rollouts came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from evopop.envs.metrics import EpisodeMetrics


@dataclass
class EpisodeLog:
    """Episodes finished during some rollouts, in the order they ended: return, length and
    env-reported metrics, with the collector step each ended at (`ends`, `metric_ends`)."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    metrics: list[EpisodeMetrics] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    metric_ends: list[int] = field(default_factory=list)

    def extend(self, other: EpisodeLog) -> None:
        self.returns += other.returns
        self.lengths += other.lengths
        self.metrics += other.metrics
        self.ends += other.ends
        self.metric_ends += other.metric_ends

    @classmethod
    def interleave(cls, logs: list[EpisodeLog]) -> EpisodeLog:
        """Logs of workers that stepped in parallel, merged in the order episodes ended (ties:
        worker order), as one in-process collector over all their envs would have logged them."""

        def order(ends: list[list[int]]) -> list[tuple[int, int]]:
            return sorted(((w, i) for w, e in enumerate(ends) for i in range(len(e))),
                          key=lambda wi: (ends[wi[0]][wi[1]], wi[0]))

        merged = cls()
        for w, i in order([log.ends for log in logs]):
            merged.returns.append(logs[w].returns[i])
            merged.lengths.append(logs[w].lengths[i])
            merged.ends.append(logs[w].ends[i])
        for w, i in order([log.metric_ends for log in logs]):
            merged.metrics.append(logs[w].metrics[i])
            merged.metric_ends.append(logs[w].metric_ends[i])
        return merged
