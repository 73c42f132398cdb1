"""Training, in three rooms: ``loop`` (the fit loop), ``run_files`` (checkpoints and the run
folder's files) and ``engine`` (the static, captured and data-parallel step)."""
