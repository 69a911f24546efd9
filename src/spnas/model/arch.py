"""Architectures: one op per searchable layer, with a one-line string form and a JSON file form.

String form: stages separated by ``|``, layers by ``,`` or spaces, e.g.
``k3e3,k3e3,k3e3,skip|k5e6,k3e3,k3e3,k3e3|...``. A leading ``SPACE:`` names the space.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from spnas.errors import SpnasError
from spnas.outputs.files import atomic_write_text, read_json
from spnas.model.space import MBCONV_OPS, SKIP, SearchSpace, get_space

ALL_OPS = MBCONV_OPS + (SKIP,)


@dataclass(frozen=True)
class Architecture:
    space: str
    ops: tuple[str, ...]

    def validate(self, space: SearchSpace) -> "Architecture":
        """Raise a one-line error naming the first layer that the space does not allow."""
        layers = space.layers()
        if len(self.ops) != len(layers):
            raise SpnasError(
                f"architecture has {len(self.ops)} layers but space {space.name!r} has {len(layers)} "
                f"(stages of {'+'.join(map(str, space.stage_lengths()))})"
            )
        for layer, op in zip(layers, self.ops):
            if op not in layer.candidates:
                where = f"layer {layer.index} (stage {layer.stage + 1})"
                raise SpnasError(
                    f"{where}: op {op!r} is not allowed; allowed: {', '.join(layer.candidates)}"
                )
        return self

    # ------------------------------------------------------------------ string form
    def to_string(self, stage_lengths: list[int] | None = None, with_space: bool = True) -> str:
        if stage_lengths is None:
            stage_lengths = get_space(self.space).stage_lengths()
        groups, start = [], 0
        for n in stage_lengths:
            groups.append(",".join(self.ops[start : start + n]))
            start += n
        body = "|".join(groups)
        return f"{self.space}:{body}" if with_space else body

    @classmethod
    def from_string(cls, text: str, space: str | None = None) -> "Architecture":
        text = text.strip()
        if ":" in text:
            named, text = text.split(":", 1)
            named = named.strip()
            if space is not None and named != space:
                raise SpnasError(f"architecture string is for space {named!r}, not {space!r}")
            space = named
        if space is None:
            raise SpnasError("architecture string names no space: prefix it with 'SPACE:' or pass --space")
        ops = tuple(tok for tok in re.split(r"[\s,|]+", text) if tok)
        for i, op in enumerate(ops):
            if op not in ALL_OPS:
                raise SpnasError(f"layer {i}: unknown op {op!r}; allowed: {', '.join(ALL_OPS)}")
        return cls(space, ops).validate(get_space(space))

    # ------------------------------------------------------------------ JSON form
    def to_dict(self) -> dict:
        return {"space": self.space, "ops": list(self.ops), "string": self.to_string()}

    @classmethod
    def from_dict(cls, data: dict, source: str = "architecture") -> "Architecture":
        if not isinstance(data, dict) or "ops" not in data or "space" not in data:
            raise SpnasError(f"{source}: expected a JSON object with fields 'space' and 'ops'")
        ops = data["ops"]
        if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
            raise SpnasError(f"{source}: field 'ops' must be a list of op names")
        for i, op in enumerate(ops):
            if op not in ALL_OPS:
                raise SpnasError(f"{source}: layer {i}: unknown op {op!r}; allowed: {', '.join(ALL_OPS)}")
        try:
            arch = cls(str(data["space"]), tuple(ops)).validate(get_space(str(data["space"])))
        except SpnasError as err:
            raise SpnasError(f"{source}: {err}") from None
        return arch

    def save(self, path: str | Path, **extra) -> None:
        atomic_write_text(path, json.dumps({**self.to_dict(), **extra}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Architecture":
        return cls.from_dict(read_json(path, "architecture file"), source=str(path))

    def canonical(self) -> "Architecture":
        """The same network with each stage's skips last (see :meth:`SearchSpace.interchangeable_runs`):
        ``k5e6,skip,k5e6`` and ``k5e6,k5e6,skip`` are one network, written the second way. Two searches
        that found the same network give the same canonical string."""
        ops = list(self.ops)
        for run in get_space(self.space).interchangeable_runs():
            kept = [ops[i] for i in run if ops[i] != SKIP]
            for position, op in zip(run, kept + [SKIP] * (len(run) - len(kept))):
                ops[position] = op
        return Architecture(self.space, tuple(ops))

    # ------------------------------------------------------------------ helpers
    def counts(self) -> dict[str, int]:
        return {op: self.ops.count(op) for op in ALL_OPS}


def _pixel1() -> Architecture:
    """SPEC §7: the architecture published for Pixel 1 (74.96% top-1, 79 ms)."""
    return Architecture.from_string(
        "imagenet:k3e3,k3e3,k3e3,skip|k5e6,k3e3,k3e3,k3e3|k5e6,k3e3,k3e3,k3e3|"
        "k5e6,k5e3,k5e3,k5e3|k5e6,k5e6,k5e6,k5e6"
    )


def uniform(space: SearchSpace, op: str) -> Architecture:
    """Every searchable layer the same op: the MobileNetV2-style baselines (k3e6 ~ MobileNetV2)."""
    return Architecture(space.name, tuple(op for _ in range(space.num_layers))).validate(space)


ARCH_PRESETS = {"spnas-pixel1": _pixel1}


def _is_file(path: Path) -> bool:
    """``Path.is_file`` that says False for a string too long to be a file name (an arch string)."""
    try:
        return path.is_file()
    except OSError:
        return False


def resolve_arch(text: str, space: str | None = None) -> Architecture:
    """An architecture from a preset name, a JSON file, or a string (the CLI's ARCH argument)."""
    if text in ARCH_PRESETS:
        arch = ARCH_PRESETS[text]()
        if space is not None and space != arch.space:
            raise SpnasError(f"preset {text!r} is for space {arch.space!r}, not {space!r}")
        return arch
    if text.startswith("uniform-"):
        return uniform(get_space(space or "small"), text.removeprefix("uniform-"))
    path = Path(text)
    if text.endswith(".json") or _is_file(path):
        arch = Architecture.load(path)
        if space is not None and space != arch.space:
            raise SpnasError(f"{path}: architecture is for space {arch.space!r}, not {space!r}")
        return arch
    return Architecture.from_string(text, space)
