"""Runs the real ``kernels/*.cu`` sources on the CPU (g++ and a CUDA shim header)."""
