"""Where a job runs and in what precision: one place for device choice, autocast, loss scaling and the
optimiser step, so search and training (and their tests on CPU) share every device code path.

Why a GradScaler only for fp16: fp16's range underflows small gradients (the superkernel's threshold
gradients start around 1e-5 and smaller), so the loss is scaled up and steps whose scaled gradients
overflow are skipped, as torch.amp intends. bf16 has float32's range and needs no scaling. The latency
term and the thresholds stay float32 either way: autocast covers the network's forward only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from spnas.jobs.divergence import MAX_SKIPPED_STEPS, GradientNorms, gradient_norms  # noqa: F401 (re-exported)
from spnas.errors import SpnasError

DEVICES_HELP = "auto (CUDA when present), cpu, cuda or cuda:N"
AMP_MODES = ("off", "bf16", "fp16")


def resolve_device(spec: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a device that exists here, or one line saying why not."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise SpnasError(f"--device must be {DEVICES_HELP}, got {spec!r}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise SpnasError(f"--device must be {DEVICES_HELP}, got {spec!r}")
    if not torch.cuda.is_available():
        raise SpnasError(f"--device {spec}: CUDA is not available here (torch {torch.__version__}); "
                         "use --device cpu, or install a CUDA build of torch")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise SpnasError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"numbered from 0")
    return device


def check_amp(amp: str, device: torch.device) -> None:
    if amp not in AMP_MODES:
        raise SpnasError(f"--amp must be one of: {', '.join(AMP_MODES)}, got {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise SpnasError("--amp fp16 needs a CUDA device (fp16 autocast with loss scaling); on the CPU use "
                         "--amp bf16 or --amp off")


@dataclass
class Precision:
    """Autocast for the forward pass and, for fp16, a GradScaler around backward and the step."""

    device: torch.device
    amp: str = "off"
    scaler: Any = field(default=None, init=False)
    #: fp16: the steps the scaler skipped in a row, on the device (the divergence guard reads it)
    skipped_in_a_row: Any = field(default=0, init=False)

    def __post_init__(self) -> None:
        check_amp(self.amp, self.device)
        if self.amp == "fp16":
            self.scaler = torch.amp.GradScaler(self.device.type)
            self.skipped_in_a_row = torch.zeros((), dtype=torch.int64, device=self.device)

    @property
    def channels_last(self) -> bool:
        """NHWC is what cuDNN's fast convolution kernels want; on the CPU it was not faster here."""
        return self.device.type == "cuda"

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format), y

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradients of ``loss`` (scaled for fp16)."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: torch.optim.Optimizer, model: torch.nn.Module,
             add_gradients: Callable[[], None] | None = None) -> GradientNorms:
        """Optimiser step; returns the (unscaled) gradient norms, on the device. ``add_gradients`` adds
        gradients of terms outside the backward pass (the L2 term) to the unscaled ones first.

        Nothing is read here: whether the step diverged is the :class:`DivergenceGuard`'s to say, from
        the norms. With fp16 a non-finite gradient is the scaler's business (the step is skipped and
        the scale lowered) until :data:`MAX_SKIPPED_STEPS` in a row say the run itself diverged.
        """
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if add_gradients is not None:
            add_gradients()
        norms = gradient_norms(model.parameters())
        if self.scaler is None:
            optimizer.step()
            return norms
        self.scaler.step(optimizer)  # skips the update when the unscaled gradients are not finite
        self.scaler.update()
        self.skipped_in_a_row = torch.where(torch.isfinite(norms.total), 0, self.skipped_in_a_row + 1)
        return norms

    def health(self) -> dict[str, Any]:
        """fp16's skipped steps in a row and loss scale (device tensors), for the divergence guard."""
        if self.scaler is None:
            return {}
        return {"skipped": self.skipped_in_a_row, "scale": self.scaler._scale}

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict() if self.scaler else None, "skipped": int(self.skipped_in_a_row)}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.scaler is not None:
            self.skipped_in_a_row = torch.tensor(state.get("skipped", 0), dtype=torch.int64, device=self.device)
