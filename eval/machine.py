"""The machine a number was measured on, for benchmark headers and model cards (report the CPU with every number)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name, for benchmark headers."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine_facts(device: str = "auto") -> dict:
    """Where a model was trained or a row measured, for cards and reports: CPU, cores, torch threads, Python, and
    the GPU when `device` lets torch use one."""
    import torch  # lazy: torch takes ~2 s to import

    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    return {"cpu": cpu_model(), "cores": cores(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "gpu": torch.cuda.get_device_name(0) if cuda else None}
