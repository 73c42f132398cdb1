"""The step engine: the static training step, its runner, CUDA-graph capture and the
data-parallel gradient all-reduce inside it."""
