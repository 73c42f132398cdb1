"""What the benchmark commands share: their error, the --out check, the PyTorch probe and
the choice of variants."""
from __future__ import annotations

import tempfile
from pathlib import Path


class BenchError(ValueError):
    """A request the sweep cannot carry out (a variant absent on this device...)."""


def prepare_output_folder(path: str) -> Path:
    """Create the ``--out`` folder and check that a file can be written in it, so that a bad
    ``--out`` fails before the sweep instead of losing its results after it."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {path}: expected a folder, got an existing file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise BenchError(f"--out {path}: expected a writable folder; creating it or a "
                         f"file in it failed: {exc.strerror or exc}") from exc
    return out


def torch_unavailable(device: str) -> str | None:
    """Why PyTorch cannot run on ``device``, or None when it can."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed (pip install torch)"
    if device == "gpu" and not torch.cuda.is_available():
        return f"this PyTorch {torch.__version__} has no CUDA device"
    return None


def choose(requested, device, devices, unavailable) -> tuple[list[str], dict[str, str]]:
    """The variants to run and the reasons others were skipped; an explicitly requested
    variant that cannot run is an error. ``devices`` maps every variant to the devices it
    runs on, ``unavailable(name, device)`` says why one cannot (the speedrun has its own)."""
    names = list(dict.fromkeys(requested)) if requested else list(devices)
    chosen, skipped = [], {}
    for name in names:
        reason = unavailable(name, device)
        if reason is None:
            chosen.append(name)
        elif requested:
            raise BenchError(f"variant {name!r} cannot run: {reason}")
        elif device in devices[name]:
            skipped[name] = reason
    return chosen, skipped
