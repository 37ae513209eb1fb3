"""`evopop sweep`: compare settings (a grid of config values × seeds) of evolutionary runs.

`run_sweep(path)` reads a sweep file, validates every run's config before training anything,
runs the runs in parallel worker processes and writes results.csv, summary.md and summary.png.
"""

from evopop.sweep.report import SettingStats, rank_settings, steps_to_target
from evopop.sweep.run import SweepInterrupted, default_out_dir, run_plan, run_sweep
from evopop.sweep.spec import PlannedRun, SweepError, SweepPlan, load_sweep, plan_sweep

__all__ = ["PlannedRun", "SettingStats", "SweepError", "SweepInterrupted", "SweepPlan",
           "default_out_dir", "load_sweep", "plan_sweep", "rank_settings", "run_plan",
           "run_sweep", "steps_to_target"]
