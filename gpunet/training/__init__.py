"""Training: the fit loop, evaluation, history, schedules, progress, checkpoints and the run
folder (claim, atomic writes, metrics, interruption)."""
