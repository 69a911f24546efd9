"""What a search did, read back from its metrics log: when each layer settled, how often decisions
flipped, how far the last step was from the target, and warnings when the search looks degenerate.

Why from the log: it is written at every run anyway (every flip is a record of its own, the state of
every threshold and group norm at each logged step), so the same diagnosis works for a finished
search, a resumed one, or an old run directory, with nothing extra to keep in memory or checkpoints.
The margin of a decision is (group norm - threshold) / norm: positive keeps the k5 ring, e3 half or
e6 half, negative drops it; near 0 the decision may still flip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from spnas.outputs.plotting import pyplot, save_figure
from spnas.model.space import MBCONV_OPS, SKIP, SearchSpace
from spnas.nn.superkernel import GROUPS

#: share of skippable layers skipped at the end above which the search "collapsed to skips"
SKIP_COLLAPSE = 0.75
#: a threshold this many norms above its group's norm will not come back down (margin below -this)
DIVERGED_MARGIN = 5.0
#: the share of the search at its end in which a flip counts as "still flipping"
LAST_TENTH = 0.1
#: the cross-entropy ratio (end of search / end of warm-up) above which the latency term "dominated":
#: the loss's value cannot say it (its runtime part is lambda·1000·ln R, mostly a constant offset),
#: but training that gets worse while the latency falls can
CE_RISE = 1.25


@dataclass
class Diagnosis:
    layers: int
    total_steps: int
    warmup_steps: int
    #: per layer: the step of its last flip + 1 (0: never flipped), i.e. from when its op stayed put
    settled_at: list[int]
    flips_per_epoch: list[int]
    #: layers that flipped in the last epoch, and in the last tenth of the steps
    flipping_last_epoch: list[int]
    flipping_last_tenth: list[int]
    last_step_ms: float | None
    target_ms: float | None
    warnings: list[str] = field(default_factory=list)
    #: the step whose decisions met the budget band and were returned (``--landing``), or None
    landed_step: int | None = None
    #: how many of that step's flips the landed decisions hold, when the step jumped over the band
    landed_within_step: int | None = None
    #: the landing rule (``--landing-rule``): first froze them, last took the window's last in band, hold
    #: held the latest in band from its hold step on
    landed_rule: str | None = None
    #: the step from which the landed decisions were frozen (rules first and hold), or None
    held_from: int | None = None

    @property
    def last_step_off_pct(self) -> float | None:
        if self.last_step_ms is None or not self.target_ms:
            return None
        return (self.last_step_ms / self.target_ms - 1) * 100

    def paragraph(self) -> str:
        """The one-paragraph summary ``spnas search`` prints at its end."""
        flipped = sorted(s for s in self.settled_at if s > 0)
        if not flipped:
            text = "Decisions: no layer ever flipped; every layer kept the op it started with. "
        else:
            never = self.layers - len(flipped)
            by_warmup = sum(s <= self.warmup_steps for s in self.settled_at)
            text = (f"Decisions: {never} of {self.layers} layers never flipped and {by_warmup} had settled by the "
                    f"end of the warm-up (step {self.warmup_steps}); the {len(flipped)} that flipped settled at "
                    f"step {flipped[0]} to {flipped[-1]} of {self.total_steps} (half of them by step "
                    f"{flipped[(len(flipped) - 1) // 2]}). Flips per epoch: {', '.join(map(str, self.flips_per_epoch))}. ")
        if self.flipping_last_epoch:
            text += (f"Still flipping in the last epoch: layer{'s' if len(self.flipping_last_epoch) > 1 else ''} "
                     f"{', '.join(map(str, self.flipping_last_epoch))}. ")
        else:
            text += "No layer flipped in the last epoch. "
        if self.landed_step is not None:
            within = ("" if self.landed_within_step is None else
                      f" (partway: that step's flips jumped over the band; with the first {self.landed_within_step} of "
                      "them applied, in the order their margins crossed zero, the decisions lie in it)")
            if self.landed_rule == "last" or self.held_from is None:
                text += (f"The landing window's last decisions in the budget band were at step {self.landed_step}"
                         f"{within}; they are the result (nothing was frozen). ")
            elif self.held_from == self.landed_step:
                text += (f"The decisions met the budget band at step {self.landed_step}{within} and were frozen there "
                         f"for the last {self.total_steps - 1 - self.held_from} steps. ")
            else:
                text += (f"The latest decisions in the budget band by step {self.held_from} were step "
                         f"{self.landed_step}'s{within}; they were held from step {self.held_from} on, so the last "
                         f"{self.total_steps - 1 - self.held_from} steps trained that one network. ")
        if self.last_step_off_pct is not None:
            text += (f"The last step's decisions: {self.last_step_ms:.3f} ms predicted, "
                     f"{self.last_step_off_pct:+.1f}% from the {self.target_ms:.3f} ms target.")
        return text

    def to_dict(self) -> dict:
        return {**asdict(self), "last_step_off_pct": self.last_step_off_pct, "summary": self.paragraph()}


def diagnose(records: list[dict], space: SearchSpace, total_steps: int, warmup_steps: int, steps_per_epoch: int,
             target_ms: float | None, result_ops: tuple[str, ...] | None = None,
             indicator_scale: str = "absolute", *, last_step_ms: float | None) -> Diagnosis:
    """The diagnosis of one search's metrics records (see the module docstring); ``result_ops``: what
    the search returned (after a budget repair), checked for a collapse beside its last step;
    ``last_step_ms``: the last step's decisions priced as the search prices its result (the caller
    knows the table and calibration; the logged ``predicted_ms`` is the supernet's own encoding), or
    None where the search logged no step."""
    layers = space.layers()
    states = [r for r in records if "ops" in r]
    flips = [r for r in records if "flipped" in r]
    settled = [0] * len(layers)
    epochs = max(1, -(-total_steps // steps_per_epoch))
    per_epoch = [0] * epochs
    last_epoch_start, last_tenth_start = (epochs - 1) * steps_per_epoch, total_steps * (1 - LAST_TENTH)
    last_epoch, last_tenth = set(), set()
    for r in flips:
        step = r["step"]
        per_epoch[min(step // steps_per_epoch, epochs - 1)] += len(r["flipped"])
        for i in r["flipped"]:
            settled[i] = max(settled[i], step + 1)
            if step >= last_epoch_start:
                last_epoch.add(i)
            if step >= last_tenth_start:
                last_tenth.add(i)
    landed = next((r for r in reversed(records) if "landed" in r), {})  # rule last: many; the result is the last
    held = next((r for r in records if "held" in r), {})
    if not held and landed.get("rule", "first") == "first":  # rule first's logs before "held" records existed
        held = {"step": landed.get("step")}
    diagnosis = Diagnosis(len(layers), total_steps, warmup_steps, settled, per_epoch, sorted(last_epoch),
                          sorted(last_tenth), last_step_ms, target_ms,
                          landed_step=landed.get("step"), landed_within_step=landed.get("within_step"),
                          landed_rule=landed.get("rule", "first" if landed else None), held_from=held.get("step"))
    diagnosis.warnings = _warnings(diagnosis, states, space, warmup_steps, total_steps, result_ops, indicator_scale)
    return diagnosis


def _warnings(d: Diagnosis, states: list[dict], space: SearchSpace, warmup_steps: int, total_steps: int,
              result_ops: tuple[str, ...] | None, indicator_scale: str) -> list[str]:
    """Signs of a degenerate search, each with what to try."""
    if not states:
        return []
    warnings = []
    skippable = [layer.index for layer in space.layers() if layer.skippable]
    skipped = max(sum(ops[i] == SKIP for i in skippable) for ops in (states[-1]["ops"], result_ops or ()) if ops)
    if skippable and skipped / len(skippable) > SKIP_COLLAPSE:
        warnings.append(f"collapse to skips: {skipped} of {len(skippable)} skippable layers are skipped at the end; "
                        "the latency pressure won over accuracy: raise --target-ms (or lower --lambda), and check "
                        "that the latency table prices skips sensibly")
    smallest = {SKIP, MBCONV_OPS[0]}
    early = [r for r in states if warmup_steps <= r["step"] <= warmup_steps + (total_steps - warmup_steps) * 0.1]
    if early and set(early[-1]["ops"]) <= smallest:
        warnings.append(f"every layer was {MBCONV_OPS[0]} or skip soon after the warm-up (step {early[-1]['step']}): "
                        "the thresholds won before the weights could argue; lengthen the warm-up "
                        "(--warmup-fraction) or lower --lambda")
    diverged = sorted({i for i, (t, n) in enumerate(zip(states[-1].get("thresholds", []), states[-1].get("norms", [])))
                       for g in GROUPS if n.get(g) and (n[g] - t[g]) / n[g] < -DIVERGED_MARGIN})
    if diverged:
        warnings.append(f"thresholds diverging: layer{'s' if len(diverged) > 1 else ''} "
                        f"{', '.join(map(str, diverged))} {'have' if len(diverged) > 1 else 'has'} a threshold over {DIVERGED_MARGIN + 1:g}x its group's "
                        "norm, a decision that will hardly come back; lower the LR (--lr-per-256)"
                        + (" or use --indicator-scale init-norm" if indicator_scale != "init-norm" else ""))
    if d.flipping_last_tenth:
        warnings.append(f"decisions still flipping in the last tenth of the search (layers "
                        f"{', '.join(map(str, d.flipping_last_tenth))}): the result depends on where it stopped; "
                        "search longer (--epochs) or check the LR schedule")
    ce_rise = _cross_entropy_rise(states)
    if ce_rise is not None and ce_rise > CE_RISE:
        advice = ("the target may lie below what the space can reach, or the controller push too hard: raise "
                  "--target-ms or lower --lambda-gain" if d.target_ms else "lower --lambda, or use --target-ms")
        warnings.append(f"the latency term dominated: after the warm-up the cross-entropy rose {ce_rise:.2f}x (last "
                        f"tenth of the search against the warm-up's last tenth) while the latency fell; {advice}")
    return warnings


def plot_decisions(records: list[dict], out: Path, diagnosis: Diagnosis, steps_per_epoch: int) -> None:
    """decisions.png: each decision's margin over time (k5, e3, e6), flips per epoch, and the hard
    decisions' predicted latency against the target."""
    states = [r for r in records if "ops" in r and "thresholds" in r and "norms" in r]
    if not states:
        return
    plt = pyplot()
    fig, axes = plt.subplots(5, 1, figsize=(9, 12), dpi=100, sharex=False,
                             gridspec_kw={"height_ratios": [1, 1, 1, 0.8, 0.8]})
    steps = [r["step"] for r in states]
    cmap = plt.get_cmap("viridis")
    for ax, group in zip(axes[:3], GROUPS):
        for i in range(diagnosis.layers):
            margins = [(r["norms"][i][group] - r["thresholds"][i][group]) / r["norms"][i][group]
                       if r["norms"][i][group] else 0.0 for r in states]
            ax.plot(steps, margins, lw=0.8, color=cmap(i / max(1, diagnosis.layers - 1)))
        ax.axhline(0, color="k", lw=0.6)
        ax.axvline(diagnosis.warmup_steps, color="k", ls=":", lw=0.8)
        ax.set_ylabel(f"{group} margin")
        ax.set_ylim(-1.5, 1.05)
    axes[0].set_title("Decision margins (norm - threshold) / norm per layer (dark: first layer); > 0 keeps the part")
    axes[3].bar(range(1, len(diagnosis.flips_per_epoch) + 1), diagnosis.flips_per_epoch, color="tab:gray")
    axes[3].set_xlabel("epoch")
    axes[3].set_ylabel("flips")
    axes[4].plot(steps, [r["predicted_ms"] for r in states], color="tab:blue", label="hard decisions")
    if diagnosis.target_ms:
        axes[4].axhline(diagnosis.target_ms, color="tab:red", ls="--", label=f"target {diagnosis.target_ms:g} ms")
        axes[4].axhspan(0.95 * diagnosis.target_ms, diagnosis.target_ms, color="tab:red", alpha=0.08,
                        label="band [0.95 T, T]")
    axes[4].set_xlabel("step")
    axes[4].set_ylabel("predicted ms")
    axes[4].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out)


def _cross_entropy_rise(states: list[dict]) -> float | None:
    """Mean cross-entropy of the search's last tenth over that of the warm-up's last tenth, when the
    predicted latency fell between them; None when there is no such comparison."""
    warm = [r for r in states if r.get("warmup") and "ce" in r]
    after = [r for r in states if not r.get("warmup") and "ce" in r]
    if len(warm) < 2 or len(after) < 2:
        return None
    tail = lambda rows: rows[-max(1, round(len(rows) * LAST_TENTH)):]
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)
    if mean(tail(after), "predicted_ms") >= mean(tail(warm), "predicted_ms"):
        return None
    return mean(tail(after), "ce") / mean(tail(warm), "ce")
