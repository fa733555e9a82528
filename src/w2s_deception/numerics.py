"""What a run's numbers depend on besides its spec, fixed by the run itself rather than by its launcher.

Float sums in another order give other last digits, and a few hundred optimiser steps of a small
model amplify them into other accuracies: the thread count, the CPU kernels torch dispatches to
(`ATEN_CPU_CAPABILITY`: AVX-512, AVX2, portable) and torch's own build all move a run's results. Every
run computes under `fixed()` (one thread on a CPU, deterministic algorithms), whether a build job,
papermill, an nbval kernel or a plain call started it, and its cache key and record hold
`settings()`, so the cache never serves an entry computed under other numerics.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

# Torch threads of every run on a CPU. One, not the machine's cores: the build keeps the cores busy with
# runs side by side, and a run's numbers must not depend on the machine it ran on.
RUN_THREADS = 1


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def settings() -> dict[str, str | int]:
    """The numerics a run computed under: torch's version, the device, and on a CPU the kernel level
    torch dispatches to and the thread count; on GPUs their model and the number of processes."""
    import torch

    out: dict[str, str | int] = {"torch": torch.__version__, "device": _device()}
    if out["device"] == "cpu":
        out["kernels"] = torch.backends.cpu.get_cpu_capability()
        out["threads"] = RUN_THREADS
    else:
        out["gpu"] = torch.cuda.get_device_name()
        out["processes"] = int(os.environ.get("WORLD_SIZE", "1"))
    return out


@contextmanager
def fixed() -> Iterator[None]:
    """Compute under the settings `settings()` reports (CPU: `RUN_THREADS` threads and deterministic
    algorithms), then restore the caller's."""
    import torch

    if _device() != "cpu":  # GPU runs keep their launcher's CPU threads: they only feed the device
        yield
        return
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(RUN_THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX tiles or AVX-512 bf16) and torch dispatches to
    its AVX-512 kernels (`ATEN_CPU_CAPABILITY=avx2` or `default` turns the bf16 path off with them)."""
    import torch

    native = any(getattr(torch.cpu, name, lambda: False)()
                 for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return native and torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def autocast_dtype() -> str | None:
    """The dtype frozen forward passes (the real models' features, the frozen-bottom activations) autocast
    their matrix products to: "bfloat16" on CPUs with bf16 matrix units, where it is several times faster;
    None (fp32) elsewhere, where bf16 is emulated and slower. Part of those runs' keys."""
    return "bfloat16" if _device() == "cpu" and bf16_matmul() else None


@contextmanager
def autocast(dtype: str | None) -> Iterator[None]:
    """Run frozen forward passes with matrix products in `dtype` (None: as they are, fp32)."""
    import torch

    if dtype is None:
        yield
        return
    with torch.autocast("cpu", dtype=getattr(torch, dtype)):
        yield
