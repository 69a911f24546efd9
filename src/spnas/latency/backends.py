"""Backends: where latency is measured. A backend turns (module, input shape) into a timed runner.

Adding a backend is one small class with ``name``, ``runtime``, ``version()`` and ``runner()``. (Called
"targets" in earlier versions, whose ``--target`` option is still accepted; a *target* now only means a
latency budget.)
"""

from __future__ import annotations

import time
from typing import Callable, ClassVar

import torch
from torch import nn

from spnas.errors import SpnasError
from spnas.jobs.runs import note
from spnas.latency.device_profiler import Runner, device_info, ort_runner, ort_version
from spnas.deploy.quantize import ModelFormat


class Backend:
    name: ClassVar[str]
    runtime: ClassVar[str]
    #: what else sets a table's timings apart, for the table cache (beside name, threads and protocol)
    cache_tag: ClassVar[str] = ""

    #: whether it can time INT8 (quantized ONNX) models
    int8: ClassVar[bool] = False

    def __init__(self, threads: int = 1, fmt: ModelFormat | None = None) -> None:
        if threads < 1:
            raise SpnasError(f"--threads must be >= 1, got {threads}")
        self.threads = threads
        self.format = fmt or ModelFormat()
        if self.format.precision != "float32" and not self.int8:
            raise SpnasError(f"backend {self.name} times float32 models only; INT8 tables are timed with "
                             f"onnxruntime ({', '.join(n for n, b in BACKENDS.items() if b.int8)})")

    def version(self) -> str:
        raise NotImplementedError

    def runner(self, module: nn.Module, input_shape: list[int]) -> Runner:
        raise NotImplementedError

    def info(self) -> dict:
        return {"backend": self.name, "runtime": self.runtime, "runtime_version": self.version(),
                "threads": self.threads, "device": device_info(), **self.format.describe()}


class OnnxRuntimeCPU(Backend):
    """ONNX export + onnxruntime on the CPU: what most edge deployments run (the default)."""

    name, runtime = "onnxruntime-cpu", "onnxruntime"
    int8 = True

    def version(self) -> str:
        return ort_version()

    def runner(self, module: nn.Module, input_shape: list[int]) -> Runner:
        return ort_runner(self.format.onnx(module, input_shape), input_shape, self.threads)


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
    """PyTorch on the GPU, timed with CUDA events around a CUDA-graph replay (threads is ignored).

    Why graphs: at batch 1 a small network's kernels take microseconds each, while eager PyTorch spends
    10-20 us of Python and driver work launching every one, so an eager timing measures the host, not
    the GPU. A captured graph launches all of a forward pass's kernels at once; the events around its
    replay time what the GPU does, as a deployed engine (TensorRT, a CUDA-graph server) runs it. A model
    that cannot be captured is timed eagerly, with a note.
    """

    name, runtime = "torch-cuda", "torch"
    #: a table timed with graphs is not comparable with an eager one: cached apart
    cache_tag = "graphs"

    def __init__(self, threads: int = 1, fmt: ModelFormat | None = None) -> None:
        super().__init__(threads, fmt)
        if not torch.cuda.is_available():
            raise SpnasError("backend torch-cuda needs a CUDA GPU; none is visible (use onnxruntime-cpu)")

    def version(self) -> str:
        return f"{torch.__version__} cuda {torch.version.cuda} {torch.cuda.get_device_name()} (CUDA graphs)"

    def runner(self, module: nn.Module, input_shape: list[int]) -> Runner:
        module = module.eval().cuda()
        x = torch.randn(*input_shape, device="cuda")
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        forward = captured(module, x) or (lambda: module(x))

        def run() -> float:
            with torch.inference_mode():
                start.record()
                forward()
                end.record()
            end.synchronize()
            return start.elapsed_time(end)

        return run


def captured(module: nn.Module, x: torch.Tensor) -> Callable[[], None] | None:
    """``module(x)`` captured as a CUDA graph (its replay), or None with a note when it cannot be."""
    try:
        with torch.inference_mode():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up outside the capture: cuDNN picks its kernels here
                for _ in range(3):
                    module(x)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                module(x)
        return graph.replay
    except RuntimeError as err:
        note(f"torch-cuda: a part could not be captured as a CUDA graph ({str(err).splitlines()[0][:120]}); "
             "it is timed eagerly (launch overhead included)")
        return None


BACKENDS: dict[str, type[Backend]] = {t.name: t for t in (OnnxRuntimeCPU, TorchCPU, TorchCUDA)}


def get_backend(name: str, threads: int = 1, fmt: ModelFormat | None = None) -> Backend:
    """The backend ``name`` timing models in ``fmt`` (float32 by default)."""
    if name not in BACKENDS:
        raise SpnasError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    return BACKENDS[name](threads, fmt)
