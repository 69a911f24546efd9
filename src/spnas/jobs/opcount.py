"""Count what a job's steps cost the host: ATen ops dispatched (each one a kernel launch on a GPU) and
host reads (``item``, ``tolist``, ``bool``, ``float``, ``int``, ``.cpu()``, ``.numpy()``: each one waits
for the GPU to finish everything queued before it); or time them (``timing=True``: each step's wall time
and the part of it spent in the forward/backward/optimiser step, with nothing counted, so the counting
costs no time).

Both are exact counts, the same on every machine, and can be taken on the CPU: a step that dispatches
few ops and reads nothing runs at the GPU's speed, since the host queues the next step while the GPU
works. :class:`StepCounter` wraps the real job (``spnas search`` / ``spnas train`` called in-process)
and files every op and read under the step, epoch end or checkpoint that issued it, with the ops of
the forward/backward/optimiser step (:class:`~spnas.jobs.engine.GlobalBatchStep`) apart from the rest
of the loop's::

    with StepCounter() as counter:
        main(["search", ...])
    counter.steps()  # [{"step": 0, "ops": 2731, "inner_ops": 2580, "reads": 0, ...}, ...]
"""

from __future__ import annotations

import functools
import sys
import time
import traceback
from collections import Counter, defaultdict
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: the Tensor methods that copy a value to the host (a synchronisation on a GPU)
READ_METHODS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")
#: modules whose ``run_steps`` and ``GlobalBatchStep`` the counter wraps (imported by name there)
JOB_MODULES = ("spnas.search.loop", "spnas.train.loop", "spnas.jobs.engine")


class _Dispatches(TorchDispatchMode):
    def __init__(self, counter: "StepCounter") -> None:
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counter._op(func)
        return func(*args, **(kwargs or {}))


class StepCounter:
    """Ops and host reads per step of the jobs run inside it (see the module docstring)."""

    def __init__(self, where: bool = False, timing: bool = False, synchronize: Callable[[], None] | None = None) -> None:
        #: (kind, index) -> Counter of op names; kind is "step", "epoch_end" or "save"
        self.ops: dict[tuple[str, int], Counter] = defaultdict(Counter)
        self.inner_ops: dict[tuple[str, int], int] = defaultdict(int)
        self.reads: dict[tuple[str, int], list[str]] = defaultdict(list)
        #: with ``timing``: (kind, index) -> seconds, all of it and the GlobalBatchStep's part
        self.seconds: dict[tuple[str, int], float] = defaultdict(float)
        self.inner_seconds: dict[tuple[str, int], float] = defaultdict(float)
        self.where, self.timing = where, timing
        #: with timing on a GPU: ``torch.cuda.synchronize``, called where a timed span starts and ends, so each
        #: span holds the device's work too (an upper bound: the host cannot run ahead across steps then)
        self._sync = synchronize or (lambda: None)
        self._bucket: tuple[str, int] | None = None
        self._inner = False
        self._reading = False

    # ------------------------------------------------------------------ recording
    def _op(self, func) -> None:
        if self._bucket is not None:
            self.ops[self._bucket][str(func.overloadpacket.__name__)] += 1
            if self._inner:
                self.inner_ops[self._bucket] += 1

    def _read(self, method: str) -> None:
        if self._bucket is None or self._reading:
            return
        where = method
        if self.where:  # the first frame outside torch: which line of spnas read the value
            frames = [f for f in traceback.extract_stack()[:-2] if "/torch/" not in f.filename]
            if frames:
                where = f"{method} {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}"
        self.reads[self._bucket].append(where)

    @contextmanager
    def bucket(self, kind: str, index: int) -> Iterator[None]:
        before, self._bucket = self._bucket, (kind, index)
        self._sync()
        started = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[(kind, index)] += time.perf_counter() - started
            self._bucket = before

    # ------------------------------------------------------------------ installing
    def __enter__(self) -> "StepCounter":
        self._stack = ExitStack()
        if not self.timing:
            for method in READ_METHODS:
                self._stack.enter_context(_patched(torch.Tensor, method, self._read_wrapper))
        for name in JOB_MODULES:
            module = sys.modules.get(name) or __import__(name, fromlist=["_"])
            if hasattr(module, "run_steps"):
                self._stack.enter_context(_patched(module, "run_steps", self._run_steps_wrapper))
        from spnas.jobs.engine import GlobalBatchStep
        self._stack.enter_context(_patched(GlobalBatchStep, "__call__", self._inner_wrapper))
        if not self.timing:
            self._stack.enter_context(_Dispatches(self))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _read_wrapper(self, original: Callable) -> Callable:
        counter, name = self, original.__name__

        @functools.wraps(original)
        def read(tensor, *args, **kwargs):
            counter._read(name)
            reading, counter._reading = counter._reading, True
            try:
                return original(tensor, *args, **kwargs)
            finally:
                counter._reading = reading
        return read

    def _run_steps_wrapper(self, original: Callable) -> Callable:
        counter = self

        def tagged(kind: str, fn: Callable[[int], Any]) -> Callable[[int], Any]:
            def call(i: int) -> Any:
                with counter.bucket(kind, i):
                    return fn(i)
            return call

        @functools.wraps(original)
        def run_steps(*, step, epoch_end, save, **kwargs):
            return original(step=tagged("step", step), epoch_end=tagged("epoch_end", epoch_end),
                            save=tagged("save", save), **kwargs)
        return run_steps

    def _inner_wrapper(self, original: Callable) -> Callable:
        counter = self

        @functools.wraps(original)
        def call(*args, **kwargs):
            inner, counter._inner = counter._inner, True
            counter._sync()
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                counter._sync()
                if counter._bucket is not None:
                    counter.inner_seconds[counter._bucket] += time.perf_counter() - started
                counter._inner = inner
        return call

    # ------------------------------------------------------------------ results
    def steps(self) -> list[dict]:
        """One row per step: ops (all), inner_ops (those of the GlobalBatchStep), reads and where."""
        rows = []
        for kind, i in sorted(set(self.ops) | set(self.seconds), key=lambda key: key[1]):
            if kind != "step":
                continue
            ops = self.ops[(kind, i)]
            rows.append({"step": i, "ops": sum(ops.values()), "inner_ops": self.inner_ops[(kind, i)],
                         "reads": len(self.reads[(kind, i)]), "read_at": list(self.reads[(kind, i)]),
                         "seconds": self.seconds[(kind, i)], "inner_seconds": self.inner_seconds[(kind, i)]})
        return rows

    def top_ops(self, steps: list[int], n: int = 15) -> list[tuple[str, float]]:
        """The ``n`` most dispatched ops, per step on average over ``steps``."""
        total: Counter = Counter()
        for i in steps:
            total.update(self.ops[("step", i)])
        return [(name, count / max(1, len(steps))) for name, count in total.most_common(n)]


@contextmanager
def _patched(owner: Any, name: str, wrap: Callable[[Callable], Callable]) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, wrap(original))
    try:
        yield
    finally:
        setattr(owner, name, original)
