"""Backends: where latency is measured. A backend turns (module, input shape) into a timed runner.

Adding a backend is one small class with ``name``, ``runtime``, ``version()`` and ``runner()``. (Called
"targets" in earlier versions, whose ``--target`` option is still accepted; a *target* now only means a
latency budget.)
"""

from __future__ import annotations

import time
from typing import ClassVar

import torch
from torch import nn

from spnas.errors import SpnasError
from spnas.latency.device_profiler import Runner, device_info, ort_runner, ort_version
from spnas.deploy.onnx_io import onnx_bytes


class Backend:
    name: ClassVar[str]
    runtime: ClassVar[str]

    def __init__(self, threads: int = 1) -> None:
        if threads < 1:
            raise SpnasError(f"--threads must be >= 1, got {threads}")
        self.threads = threads

    def version(self) -> str:
        raise NotImplementedError

    def runner(self, module: nn.Module, input_shape: list[int]) -> Runner:
        raise NotImplementedError

    def info(self) -> dict:
        return {"backend": self.name, "runtime": self.runtime, "runtime_version": self.version(),
                "threads": self.threads, "device": device_info()}


class OnnxRuntimeCPU(Backend):
    """ONNX export + onnxruntime on the CPU: what most edge deployments run (the default)."""

    name, runtime = "onnxruntime-cpu", "onnxruntime"

    def version(self) -> str:
        return ort_version()

    def runner(self, module: nn.Module, input_shape: list[int]) -> Runner:
        return ort_runner(onnx_bytes(module, input_shape), input_shape, self.threads)


class TorchCPU(Backend):
    """Eager PyTorch under ``torch.inference_mode`` (sets the process's torch thread count)."""

    name, runtime = "torch-cpu", "torch"

    def version(self) -> str:
        return torch.__version__

    def runner(self, module: nn.Module, input_shape: list[int]) -> Runner:
        torch.set_num_threads(self.threads)
        module = module.eval()
        x = torch.randn(*input_shape)
        clock = time.perf_counter

        def run() -> float:
            with torch.inference_mode():
                start = clock()
                module(x)
                return (clock() - start) * 1e3

        return run


class TorchCUDA(Backend):
    """Eager PyTorch on the GPU, timed with CUDA events (threads is ignored)."""

    name, runtime = "torch-cuda", "torch"

    def __init__(self, threads: int = 1) -> None:
        super().__init__(threads)
        if not torch.cuda.is_available():
            raise SpnasError("backend torch-cuda needs a CUDA GPU; none is visible (use onnxruntime-cpu)")

    def version(self) -> str:
        return f"{torch.__version__} cuda {torch.version.cuda} {torch.cuda.get_device_name()}"

    def runner(self, module: nn.Module, input_shape: list[int]) -> Runner:
        module = module.eval().cuda()
        x = torch.randn(*input_shape, device="cuda")
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def run() -> float:
            with torch.inference_mode():
                start.record()
                module(x)
                end.record()
            end.synchronize()
            return start.elapsed_time(end)

        return run


BACKENDS: dict[str, type[Backend]] = {t.name: t for t in (OnnxRuntimeCPU, TorchCPU, TorchCUDA)}


def get_backend(name: str, threads: int = 1) -> Backend:
    if name not in BACKENDS:
        raise SpnasError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    return BACKENDS[name](threads)
