"""`evopop plot`: PNG pictures of how a run went, drawn from its logs alone (no agent is loaded).

Every run, evolutionary or a single agent (a population of one), gets fitness.png (for a
single agent: its learning curve), hparams.png and lineage.png. Logs of a killed run end in a
torn line, which is skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from evopop.errors import UserError
from evopop.evolution.selection import elite_index
from evopop.records import GenerationRecord, LineageRecord, MemberRecord
from evopop.rundir import METRICS_FILE, RunDir

Slot = tuple[int, int]  # (generation, slot): where a member sits in the lineage picture
LOG_AXES = frozenset({"lr"})  # spans decades
MAX_LABELLED_GENERATIONS = 25  # beyond this, edge labels are thinned to every k-th generation


class PlotFile(str, Enum):
    """The files `plot_run` writes."""

    FITNESS = "fitness.png"
    HPARAMS = "hparams.png"
    LINEAGE = "lineage.png"


class Change(str, Enum):
    """How a member differs from its predecessor: a mutation kind as written in lineage.jsonl
    (the values of `evopop.evolution.mutation.MutationKind`), MIGRATION for a copy from another
    sub-population (multi-frequency selection), KEPT for a member passing on unchanged (the
    elite, or a survivor of truncation), OTHER for a kind this module does not know."""

    KEPT = "kept"
    NONE = "none"
    HYPERPARAMETER = "hyperparameter"
    ARCHITECTURE = "architecture"
    NEW_LAYER = "new_layer"
    PARAMETERS = "parameters"
    ACTIVATION = "activation"
    MIGRATION = "migration"
    OTHER = "other"


# the short edge label and the colour of each change
STYLE: dict[Change, tuple[str, str]] = {
    Change.KEPT: ("kept", "goldenrod"), Change.NONE: ("none", "darkgray"),
    Change.HYPERPARAMETER: ("hp", "C0"), Change.ARCHITECTURE: ("arch", "C3"),
    Change.NEW_LAYER: ("layer", "C2"), Change.PARAMETERS: ("noise", "C4"),
    Change.ACTIVATION: ("act", "C1"), Change.MIGRATION: ("migr", "C6"),
    Change.OTHER: ("?", "black")}


@dataclass(frozen=True)
class Node:
    """One member in one generation, with the values the hparams plot follows."""

    generation: int
    slot: int
    id: int
    founder: int
    fitness: float | None
    elite: bool
    values: dict[str, float]


@dataclass(frozen=True)
class Edge:
    """Predecessor -> member: the same member one generation on, or a parent -> its copy."""

    src: Slot
    dst: Slot
    change: Change
    label: str


@dataclass(frozen=True)
class Lineage:
    nodes: list[Node]
    edges: list[Edge]

    def varying(self) -> list[str]:
        """Values that differ somewhere in the run (in first-seen order): the ones worth a plot."""
        names = list(dict.fromkeys(name for node in self.nodes for name in node.values))
        return [n for n in names if len({node.values.get(n) for node in self.nodes}) > 1]


def read_target(run_dir: Path) -> float | None:
    """`evolution.target` of the run's config.yaml, if it set one (and the file reads)."""
    try:
        config = yaml.safe_load(RunDir(run_dir).config.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    evolution = config.get("evolution") if isinstance(config, dict) else None
    target = evolution.get("target") if isinstance(evolution, dict) else None
    finite = isinstance(target, (int, float)) and not isinstance(target, bool)
    return float(target) if finite and math.isfinite(target) else None


def load_metrics(run_dir: Path) -> list[GenerationRecord]:
    """The run's generation records sorted by generation, the last copy of each kept."""
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    run = RunDir(run_dir)
    if not run.metrics.is_file():
        raise UserError(f"{run_dir} has no {METRICS_FILE}: not an evopop run directory, "
                        "or the run has not logged anything yet")
    generations = {r.generation: r for r in run.generations()}
    if not generations:
        raise UserError(f"{run.metrics} holds no readable metrics lines (empty, or not written "
                        "by evopop)")
    return [generations[g] for g in sorted(generations)]


def mutation_label(mutation: dict[str, Any] | None) -> tuple[Change, str]:
    """The change and a short label ("hp:lr", "arch", "layer", "noise", "act", "none")."""
    if not isinstance(mutation, dict):
        return Change.NONE, STYLE[Change.NONE][0]
    kind = str(mutation.get("kind"))
    change = Change(kind) if kind in {c.value for c in Change} else Change.OTHER
    if change is Change.HYPERPARAMETER:
        return change, f"hp:{mutation.get('detail', '?')}"
    return change, kind if change is Change.OTHER else STYLE[change][0]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _values(member: MemberRecord) -> dict[str, float]:
    """Numeric hyperparameters plus architecture sizes of one metrics member."""
    values = {k: float(v) for k, v in member.hparams.items() if _number(v)}
    spec = member.spec
    if _number(spec.get("hidden_size")):
        values["hidden_size"] = float(spec["hidden_size"])
    if isinstance(spec.get("head"), list):
        values.update(head_nodes=float(sum(spec["head"])), head_layers=float(len(spec["head"])))
    return values


def _elite_slot(members: tuple[MemberRecord, ...]) -> int | None:
    """The elite as the loop picks it (fittest, first on ties); None if every member diverged."""
    fits = [m.fitness for m in members]
    return elite_index(fits) if any(math.isfinite(f) for f in fits) else None


def _fitness(member: MemberRecord) -> float | None:
    return member.fitness if math.isfinite(member.fitness) else None


def build_lineage(records: list[GenerationRecord], lineage: list[LineageRecord]) -> Lineage:
    """The lineage tree from metrics generation lines (sorted) and lineage.jsonl lines.

    A member whose id was in the previous generation was kept unchanged; otherwise its parent
    there is its predecessor and its mutation (lineage.jsonl, else metrics) labels the edge.
    """
    mutations = {r.id: r.mutation for r in lineage}
    founder: dict[int, int] = {}
    nodes: list[Node] = []
    edges: list[Edge] = []
    previous: dict[int, Slot] = {}
    for record in records:
        g, current = record.generation, {}
        if any(at[0] != g - 1 for at in previous.values()):
            previous = {}  # a generation is missing: no edges across the gap
        elite = _elite_slot(record.members)
        for slot, member in enumerate(record.members):
            mid, parent = member.id, member.parent_id
            founder.setdefault(mid, founder.get(parent, mid) if parent is not None else mid)
            nodes.append(Node(g, slot, mid, founder[mid], _fitness(member), slot == elite,
                              _values(member)))
            current[mid] = (g, slot)
            if mid in previous:
                edges.append(Edge(previous[mid], (g, slot), Change.KEPT, STYLE[Change.KEPT][0]))
            elif parent in previous:
                change, label = mutation_label(mutations.get(mid, member.mutation))
                edges.append(Edge(previous[parent], (g, slot), change, label))
        previous = current
    return Lineage(nodes, edges)


def _figure(width: float, height: float) -> Any:
    """A pyplot-free figure: no global figure registry and no backend switch for the caller
    (savefig picks the Agg canvas for png by itself)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _axes(size: tuple[float, float], xlabel: str, ylabel: str, title: str) -> tuple[Any, Any]:
    fig = _figure(*size)
    ax = fig.add_subplot()
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    return fig, ax


def _founder_colours(lineage: Lineage) -> dict[Any, Any]:
    from matplotlib import colormaps

    founders = sorted({n.founder for n in lineage.nodes}, key=str)
    cmap = colormaps["tab10" if len(founders) <= 10 else "tab20"]
    return {f: cmap(i % cmap.N) for i, f in enumerate(founders)}


def plot_fitness(records: list[GenerationRecord], lineage: Lineage, target: float | None,
                 path: Path, title: str) -> None:
    """Each member's fitness (colour = founder) and the elite's against env steps; a diverged
    member has no fitness to place it by, so it is a red triangle on the x-axis."""
    fig, ax = _axes((9, 5), "env steps (all members)", "fitness (mean evaluation return)",
                    f"fitness — {title}")
    steps = {r.generation: r.total_env_steps for r in records}
    colours = _founder_colours(lineage)
    alive = [n for n in lineage.nodes if n.fitness is not None]
    ax.scatter([], [], s=16, color="gray", label="member (colour = founder)")
    ax.scatter([steps[n.generation] for n in alive], [n.fitness for n in alive], s=16, alpha=0.7,
               c=[colours[n.founder] for n in alive])
    elite = [(r.total_env_steps, r.elite_fitness) for r in records
             if math.isfinite(r.elite_fitness)]
    ax.plot([x for x, _ in elite], [y for _, y in elite], "k.-", lw=1.8, label="elite")
    dead = [steps[n.generation] for n in lineage.nodes if n.fitness is None]
    if dead:
        ax.plot(dead, [0.02] * len(dead), "v", color="red", ms=7, clip_on=False,
                transform=ax.get_xaxis_transform(), label="diverged (no fitness)")
    if target is not None:
        ax.axhline(target, ls="--", color="green", label=f"target {target:g}")
    ax.legend(loc="best", fontsize=8)
    fig.savefig(path)


def plot_hparams(lineage: Lineage, path: Path, title: str) -> None:
    """One panel per varying value; segments join each member to its predecessor (a child starts
    at its parent's value), colour = founder, elites ringed."""
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    names = lineage.varying()
    fig = _figure(9, 1.2 + 1.8 * max(1, len(names)))
    if not names:
        fig.text(0.5, 0.5, "no hyperparameter or architecture value changed", ha="center")
        fig.savefig(path)
        return
    colours = _founder_colours(lineage)
    at = {(n.generation, n.slot): n for n in lineage.nodes}
    axes = fig.subplots(len(names), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, names, strict=True):
        pairs = [(at[e.src], at[e.dst]) for e in lineage.edges
                 if name in at[e.src].values and name in at[e.dst].values]
        ax.add_collection(LineCollection(
            [[(a.generation, a.values[name]), (b.generation, b.values[name])] for a, b in pairs],
            colors=[colours[b.founder] for _, b in pairs], linewidths=1.2, alpha=0.8))
        nodes = [n for n in lineage.nodes if name in n.values]
        for group, style in ((nodes, {"s": 10, "c": [colours[n.founder] for n in nodes]}),
                             ([n for n in nodes if n.elite], {"s": 45, "fc": "none", "ec": "k"})):
            ax.scatter([n.generation for n in group], [n.values[name] for n in group], **style)
        if name in LOG_AXES and all(n.values[name] > 0 for n in nodes):
            ax.set_yscale("log")
        elif all(n.values[name].is_integer() for n in nodes):
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("generation")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = [Line2D([], [], color=c, marker="o", label=f"founder {f}")
               for f, c in colours.items()]
    handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="k", label="elite"))
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 6),
               fontsize=8, title=f"hyperparameters — {title}")
    fig.savefig(path)


def _edge_labels(ax: Any, lineage: Lineage, n_gen: int) -> None:
    """Each child's mutation label under it; only every k-th generation's when crowded."""
    stride = math.ceil(n_gen / MAX_LABELLED_GENERATIONS)
    for e in lineage.edges:
        if e.change is not Change.KEPT and e.dst[0] % stride == 0:
            ax.text(e.dst[0], e.dst[1] + 0.33, e.label, fontsize=6, ha="center", va="center",
                    color=STYLE[e.change][1], zorder=5,
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})


def plot_lineage(lineage: Lineage, path: Path, title: str) -> None:
    """The family tree: x = generation, y = slot, node = member id (colour = founder) with the
    mutation that made it below, edge colour = change, elites ringed gold, diverged edged red."""
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    n_gen = 1 + max(n.generation for n in lineage.nodes) - min(n.generation for n in lineage.nodes)
    n_slot = 1 + max(n.slot for n in lineage.nodes)
    fig, ax = _axes((min(max(7.0, 0.7 * n_gen + 2.5), 40.0), max(3.0, 0.75 * n_slot + 1.5)),
                    "generation", "slot", f"lineage — {title}")
    colours = _founder_colours(lineage)
    for change in Change:
        segs = [(e.src, e.dst) for e in lineage.edges if e.change is change]
        ax.add_collection(LineCollection(segs, colors=STYLE[change][1], zorder=1,
                                         linewidths=2.2 if change is Change.KEPT else 1.2))
    nodes, elites = lineage.nodes, [n for n in lineage.nodes if n.elite]
    ax.scatter([n.generation for n in nodes], [n.slot for n in nodes], s=200, zorder=3, lw=1.5,
               c=[colours[n.founder] for n in nodes],
               edgecolors=["white" if n.fitness is not None else "red" for n in nodes])
    ax.scatter([n.generation for n in elites], [n.slot for n in elites], s=440, zorder=2,
               fc="none", ec="gold", lw=2.5)
    for n in nodes:
        ax.text(n.generation, n.slot, str(n.id), fontsize=6, ha="center", va="center", zorder=4)
    _edge_labels(ax, lineage, n_gen)
    handles = [Line2D([], [], color=STYLE[c][1], label=STYLE[c][0]) for c in Change
               if any(e.change is c for e in lineage.edges)]
    handles += [Line2D([], [], ls="", marker="o", ms=11, mfc="none", mec="gold", mew=2.5,
                       label="elite"),
                Line2D([], [], ls="", marker="o", mfc="white", mec="red", label="diverged")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    ax.set_xlim(min(n.generation for n in nodes) - 0.6, max(n.generation for n in nodes) + 0.6)
    ax.set_ylim(n_slot - 0.4, -0.6)
    ax.set_yticks(range(n_slot))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.savefig(path)


def plot_run(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Writes the run's PNGs into `out_dir` (default run_dir/plots) and returns their paths."""
    run_dir = Path(run_dir)
    records = load_metrics(run_dir)
    out = Path(out_dir) if out_dir is not None else RunDir(run_dir).plots
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the plot directory {out}: {err.strerror}") from None
    title = run_dir.resolve().name
    lineage = build_lineage(records, RunDir(run_dir).lineage_records())
    paths = [out / f.value for f in (PlotFile.FITNESS, PlotFile.HPARAMS, PlotFile.LINEAGE)]
    plot_fitness(records, lineage, read_target(run_dir), paths[0], title)
    plot_hparams(lineage, paths[1], title)
    plot_lineage(lineage, paths[2], title)
    return paths
