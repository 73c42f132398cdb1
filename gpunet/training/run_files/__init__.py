"""The run's files: checkpoints (writing, layout, safe reading), atomic writes, the run
folder's claim, the metrics files and interruptions."""
