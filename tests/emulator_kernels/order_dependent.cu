// A kernel that is correct only if blocks run one after another in grid order, which CUDA
// never promises: block b reads what block b - 1 wrote. tests/test_emulator_schedules.py
// shows it passes the sequential schedule and fails the shuffled and concurrent ones.
__global__ void running_total(const int* values, int* totals)
{
    if (threadIdx.x != 0) return;
    const int b = blockIdx.x;
    totals[b] = (b == 0 ? 0 : totals[b - 1]) + values[b];
}
