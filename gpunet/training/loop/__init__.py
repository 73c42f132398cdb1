"""The fit loop: ``fit`` and its state, evaluation, inputs, history, schedules, progress."""
