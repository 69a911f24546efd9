"""The sweep's report: accuracy (mean ± spread over seeds) against latency (or the swept budget: the
rows' ``x``), the uniform nets' front, and whether each searched net lies above it.

The bar (issue 17): a searched net beats the uniform front when its mean accuracy is above the
front's linear interpolation at its own latency. Outside the front's latency range the front is held
flat (a net faster than every uniform one must still match the fastest one's accuracy; a slower one
must beat the best), so the comparison never extrapolates in the searched net's favour.
"""

from __future__ import annotations

import csv
import io
import random
import statistics
from pathlib import Path

from spnas.outputs.files import atomic_write_text, write_json
from spnas.outputs.plotting import pyplot, save_figure
from spnas.workflows.report import comparison_warnings, prediction_offset_warnings, same_networks
from spnas.outputs.text_table import format_table
from spnas.search.config import SearchConfig
from spnas.search.repair import band_low

#: the budget band's lower end, as a share of the target: T·(1 - 2·margin) with the searches' margin
BAND_LOW = band_low(1.0, SearchConfig.target_margin)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, accuracy) points no other point beats on both (at most as slow and at least as
    accurate, one of them strictly), fastest first."""
    front: list[tuple[float, float]] = []
    for latency, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((latency, acc))
    return front


def front_accuracy(front: list[tuple[float, float]], latency: float) -> float:
    """The front's accuracy at ``latency``: linear between its points, flat beyond its ends."""
    if latency <= front[0][0]:
        return front[0][1]
    for (x0, y0), (x1, y1) in zip(front, front[1:]):
        if latency <= x1:
            return y0 + (y1 - y0) * (latency - x0) / (x1 - x0)
    return front[-1][1]


def summarise(row: dict) -> dict:
    """Mean, standard deviation (n-1; 0 for one seed) and range of a row's accuracies over seeds."""
    accs = list(row["test_top1_by_seed"].values())
    return {**row, "test_top1_mean": statistics.fmean(accs),
            "test_top1_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "test_top1_min": min(accs), "test_top1_max": max(accs), "seeds": len(accs)}


def x_of(row: dict) -> float:
    """A row's place on the sweep's axis: its latency, or its cost in the swept budget."""
    return row.get("x", row["latency_ms"])


def compare_to_front(rows: list[dict]) -> tuple[list[tuple[float, float]], list[dict]]:
    """The uniform nets' front (mean accuracies) and each searched net's margin over it, in points."""
    front = pareto_front([(x_of(r), r["test_top1_mean"]) for r in rows if r["kind"] == "uniform"])
    verdicts = []
    for r in rows:
        if r["kind"] != "searched":
            continue
        at = front_accuracy(front, x_of(r))
        verdicts.append({"model": r["model"], "latency_ms": r["latency_ms"], "x": x_of(r),
                         "test_top1_mean": r["test_top1_mean"],
                         "front_top1": at, "margin_points": (r["test_top1_mean"] - at) * 100,
                         "above_front": r["test_top1_mean"] > at})
    return front, verdicts


def bootstrap_difference(a: list[float], b: list[float], resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """A 95% percentile interval of mean(a) - mean(b), resampling each group with replacement."""
    rng = random.Random(seed)
    diffs = sorted(statistics.fmean(rng.choices(a, k=len(a))) - statistics.fmean(rng.choices(b, k=len(b)))
                   for _ in range(resamples))
    return diffs[int(0.025 * resamples)], diffs[int(0.975 * resamples) - 1]


def compare_methods(rows: list[dict], front_margins: dict[str, float]) -> list[dict]:
    """Per target and pair of methods: the difference of mean accuracy, of latency and of the margin
    over the uniform front (``front_margins``, points, by model), with bootstrap intervals. The unit is
    one search (its accuracy averaged over training seeds), so with 3 search seeds an interval is wide:
    that is the honest width. Methods that land at different latencies differ in accuracy for that
    reason alone; the margin over the front is measured at each net's own latency, so it does not."""
    groups: dict[tuple[float, str], list[dict]] = {}
    for r in rows:
        if r["kind"] == "searched":
            groups.setdefault((r.get("point") or r["target_ms"], r["method"]), []).append(r)
    out = []
    for (target, m1), g1 in sorted(groups.items()):
        for (t2, m2), g2 in sorted(groups.items()):
            if t2 != target or m2 <= m1:
                continue
            acc1, acc2 = [r["test_top1_mean"] for r in g1], [r["test_top1_mean"] for r in g2]
            lat1, lat2 = [r["latency_ms"] for r in g1], [r["latency_ms"] for r in g2]
            margin1, margin2 = [front_margins[r["model"]] for r in g1], [front_margins[r["model"]] for r in g2]
            lo, hi = bootstrap_difference(acc1, acc2)
            lat_lo, lat_hi = bootstrap_difference(lat1, lat2)
            margin_lo, margin_hi = bootstrap_difference(margin1, margin2)
            out.append({"target_ms": target, "a": m1, "b": m2, "searches": [len(g1), len(g2)],
                        "top1_a": statistics.fmean(acc1), "top1_b": statistics.fmean(acc2),
                        "top1_diff_points": (statistics.fmean(acc1) - statistics.fmean(acc2)) * 100,
                        "top1_diff_ci_points": [lo * 100, hi * 100], "top1_significant": lo > 0 or hi < 0,
                        "latency_a_ms": statistics.fmean(lat1), "latency_b_ms": statistics.fmean(lat2),
                        "latency_diff_ci_ms": [lat_lo, lat_hi], "latency_significant": lat_lo > 0 or lat_hi < 0,
                        "front_margin_a_points": statistics.fmean(margin1),
                        "front_margin_b_points": statistics.fmean(margin2),
                        "front_margin_diff_ci_points": [margin_lo, margin_hi],
                        "front_margin_significant": margin_lo > 0 or margin_hi < 0})
    return out


def write_sweep_report(run_dir: Path, summary: dict, num_classes: int) -> dict:
    """sweep.json, sweep.csv (one line per network and seed), sweep.png and report.md; returns the summary."""
    rows = [summarise(r) for r in summary["models"]]
    front, verdicts = compare_to_front(rows)
    summary = {**summary, "models": rows, "uniform_front": [list(p) for p in front], "verdicts": verdicts,
               "method_comparisons": compare_methods(rows, {v["model"]: v["margin_points"] for v in verdicts}),
               "same_networks": same_networks(rows),
               "warnings": [*(f"measured latencies may be off: {w}"
                                for w in summary.get("measurement_conditions", {}).get("warnings", [])),
                              *prediction_offset_warnings(rows),
                              *comparison_warnings([{"model": r["model"], "test_top1": r["test_top1_mean"]} for r in rows],
                                                   num_classes)]}
    write_json(run_dir / "sweep.json", summary)
    buf = io.StringIO()
    fields = ["model", "kind", "method", "search_seed", "seed", "test_top1", "latency_ms", "measured_iqr_ms",
              "predicted_ms", "target_ms", *(["point", "x"] if summary.get("budget", "latency") != "latency" else []),
              "arch"]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        for seed, acc in r["test_top1_by_seed"].items():
            writer.writerow({**{k: r[k] for k in fields if k in r}, "seed": seed, "test_top1": acc})
    atomic_write_text(run_dir / "sweep.csv", buf.getvalue())
    _plot(run_dir / "sweep.png", rows, front, summary)
    atomic_write_text(run_dir / "report.md", _markdown(summary))
    return summary


def _axis_label(summary: dict) -> str:
    if summary.get("budget", "latency") == "latency":
        return f"{summary['latency']} latency, ms ({summary['latency_backend']}, batch 1)"
    return f"{summary['budget']} ({summary['budget_unit']})"


def _plot(path: Path, rows: list[dict], front: list[tuple[float, float]], summary: dict) -> None:
    plt = pyplot()
    latency_axis = summary.get("budget", "latency") == "latency"
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    lo, hi = min(x_of(r) for r in rows), max(x_of(r) for r in rows)
    line = [(min(lo, front[0][0]), front[0][1]), *front, (max(hi, front[-1][0]), front[-1][1])]  # flat ends
    ax.plot([p[0] for p in line], [p[1] * 100 for p in line], "--", color="tab:blue", lw=1,
            label="uniform nets' front (flat beyond its ends)")
    for r in rows:
        searched = r["kind"] == "searched"
        ax.errorbar(x_of(r), r["test_top1_mean"] * 100, yerr=r["test_top1_std"] * 100,
                    xerr=(r.get("measured_iqr_ms") or 0) / 2 if latency_axis else 0, fmt="*" if searched else "o",
                    ms=12 if searched else 7, color="tab:red" if searched else "tab:blue", capsize=3)
        ax.annotate(r["model"].replace("searched-", "").replace("uniform-", ""),
                    (x_of(r), r["test_top1_mean"] * 100), textcoords="offset points", xytext=(6, -12),
                    fontsize=7)
    for target in summary.get("points", summary["targets_ms"]):
        ax.axvline(target, color="tab:red", ls=":", lw=0.8)
    ax.plot([], [], "*", color="tab:red", ms=10, label=f"searched (its {'predicted target' if latency_axis else 'budget'}: "
            "dotted line)")
    ax.set_xlabel(_axis_label(summary))
    ax.set_ylabel(f"test top-1 (%), mean ± std over {len(summary['seeds'])} seeds")
    ax.set_title("Latency sweep: searched nets against the uniform nets" if latency_axis else
                 f"{summary['budget']} sweep at {summary['targets_ms'][0]:.3f} ms: searched nets against the uniform nets")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def _markdown(summary: dict) -> str:
    rows = sorted(summary["models"], key=x_of)
    budget = summary.get("budget", "latency")
    extra = () if budget == "latency" else (f"{budget} (budget)",)
    table = format_table(
        ("model", "top-1 % mean ± std (min–max)", "latency ms (IQR)", "predicted ms", "target ms", *extra,
         "architecture"),
        [(r["model"], f"{r['test_top1_mean'] * 100:.2f} ± {r['test_top1_std'] * 100:.2f} "
          f"({r['test_top1_min'] * 100:.2f}–{r['test_top1_max'] * 100:.2f})",
          f"{r['latency_ms']:.3f}" + (f" ({r['measured_iqr_ms']:.3f})" if r.get("measured_iqr_ms") is not None else ""),
          f"{r['predicted_ms']:.3f}", f"{r['target_ms']:.3f}" if r["target_ms"] is not None else "",
          *(() if budget == "latency" else (f"{x_of(r):,.0f}" + (f" ({r['point']:,.0f})" if r.get("point") else ""),)),
          f"`{r['arch'].split(':', 1)[1]}`") for r in rows], markdown=True)
    verdicts = summary["verdicts"]
    above = sum(v["above_front"] for v in verdicts)
    latency_axis = summary.get("budget", "latency") == "latency"
    where = ((lambda v: f"{v['latency_ms']:.3f} ms") if latency_axis
             else lambda v: f"{v['x']:,.0f} {summary['budget_unit']}")
    lines = "\n".join(f"- {v['model']}: {v['test_top1_mean'] * 100:.2f}% at {where(v)}; the front "
                      f"there {v['front_top1'] * 100:.2f}%: **{'above' if v['above_front'] else 'not above'}** "
                      f"({v['margin_points']:+.2f} points)" for v in verdicts)
    warnings = "".join(f"\n> **Warning:** {w}\n" for w in summary.get("warnings", []))
    comparisons = _comparisons_markdown(summary["method_comparisons"])
    searches = _searches_markdown([r for r in summary["models"] if r["kind"] == "searched"])
    same = "".join(f"- {' and '.join(names)} are the same network (equal up to where skips sit)\n"
                   for names in summary["same_networks"])
    lines += f"\n{same}" if same else ""
    swept = ("" if latency_axis else f"Swept: --max-{summary['budget']} at {', '.join(f'{p:,.0f}' for p in summary['points'])} "
             f"{summary['budget_unit']}, every search at the latency target {summary['targets_ms'][0]:.3f} ms; "
             f"the front and the verdicts are on {summary['budget']}.\n\n")
    return f"""# spnas sweep: {summary['preset']} preset on {summary['data']}

{swept}{len(summary.get('points', summary['targets_ms']))} targets, {len(verdicts)} searched nets, {len(summary['seeds'])} training seeds per network (seeds {summary['seeds']}). Searches of
{summary['epochs']['search']} epochs (one warm-up of {summary['warmup_steps']} steps per method and search seed, shared
by every target), trainings of {summary['epochs']['train']} epochs. Latency:
{summary['latency']} ({summary['latency_backend']}, {summary['threads']} thread).
{warnings}
**{above} of {len(verdicts)} searched nets lie above the uniform nets' front** (their mean accuracy
above the front's linear interpolation at their own {"latency" if latency_axis else summary['budget']}):

{lines}
{comparisons}
{table}
{searches}
Accuracy: the test split, EMA or raw weights, whichever was better on validation; ± is the standard
deviation over training seeds, which a difference must clear to mean anything.

![sweep](sweep.png)
"""


def in_band_by_itself(row: dict) -> bool | None:
    """Whether a search's own result met [T·(1 - 2·margin), T]: single-path without repair flips (its
    last step, or its landing), multi-path's most likely ops; None for random search, which only draws
    inside the band."""
    if row["method"] == "random" or row.get("target_ms") is None:
        return None
    if row.get("repair_flips") is not None and row["method"] != "multipath":
        return row["repair_flips"] == 0
    return BAND_LOW * row["target_ms"] <= row["predicted_ms"] <= row["target_ms"]


def _method_ending(method: str, searches: list[dict]) -> str:
    """'single-path: 3 of 9, mean top-1 78.12%': how many met the band by themselves, and their accuracy."""
    met = [in_band_by_itself(r) for r in searches if in_band_by_itself(r) is not None]
    count = f"{sum(met)} of {len(met)}" if met else "(drawn in it)"
    return f"{method}: {count}, mean top-1 {statistics.fmean(r['test_top1_mean'] for r in searches) * 100:.2f}%"


def landed_at(step: int | None, within_step: int | None) -> str:
    """A landing's step, and how many of its flips it kept when that step jumped over the band."""
    if step is None:
        return ""
    return str(step) if within_step is None else f"{step} ({within_step} of its flips)"


def _searches_markdown(rows: list[dict]) -> str:
    """How each search ended: where its own decisions landed, the repair it needed, its warnings."""
    if not rows:
        return ""
    table = format_table(
        ("model", "last step ms (vs target)", "in the band by itself", "landed at step", "repair flips", "top-1 %",
         "warnings"),
        [(r["model"], f"{r['last_step_predicted_ms']:.3f} ({(r['last_step_predicted_ms'] / r['target_ms'] - 1) * 100:+.1f}%)"
          if r.get("last_step_predicted_ms") is not None else "",
          {True: "yes", False: "no", None: "(drawn in it)"}[in_band_by_itself(r)],
          landed_at(r.get("landed_step"), r.get("landed_within_step")),
          "" if r.get("repair_flips") is None else str(r["repair_flips"]), f"{r['test_top1_mean'] * 100:.2f}",
          str(len(r.get("search_warnings", []))))
         for r in rows], markdown=True)
    by_method: dict[str, list[dict]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    counts = "; ".join(_method_ending(method, searches) for method, searches in by_method.items())
    warnings = "".join(f"- {r['model']}: {w}\n" for r in rows for w in r.get("search_warnings", []))
    landing_note = (" A landing's result is the step it landed at, which under `--landing-rule last` can precede "
                    "the last step." if any(r.get("landed_step") is not None for r in rows) else "")
    return f"""
## How each search ended

Searches whose own result met the budget band [{BAND_LOW:g}·T, T] without a repair, and their mean
top-1 over searches and training seeds: {counts}.{landing_note}

{table}
{"" if not warnings else chr(10) + "Search warnings:" + chr(10) + chr(10) + warnings}"""


def _comparisons_markdown(comparisons: list[dict]) -> str:
    if not comparisons:
        return ""
    table = format_table(
        ("target", "methods a vs b", "top-1 % a / b", "a - b points (95% CI)", "latency ms a / b", "a - b ms (95% CI)",
         "over the front, points a / b", "a - b (95% CI)"),
        [(f"{c['target_ms']:g}", f"{c['a']} vs {c['b']}", f"{c['top1_a'] * 100:.2f} / {c['top1_b'] * 100:.2f}",
          f"{c['top1_diff_points']:+.2f} [{c['top1_diff_ci_points'][0]:+.2f}, {c['top1_diff_ci_points'][1]:+.2f}]"
          + (" **significant**" if c["top1_significant"] else ""),
          f"{c['latency_a_ms']:.3f} / {c['latency_b_ms']:.3f}",
          f"[{c['latency_diff_ci_ms'][0]:+.3f}, {c['latency_diff_ci_ms'][1]:+.3f}]"
          + (" **significant**" if c["latency_significant"] else ""),
          f"{c['front_margin_a_points']:+.2f} / {c['front_margin_b_points']:+.2f}",
          f"{c['front_margin_a_points'] - c['front_margin_b_points']:+.2f} [{c['front_margin_diff_ci_points'][0]:+.2f}, "
          f"{c['front_margin_diff_ci_points'][1]:+.2f}]" + (" **significant**" if c["front_margin_significant"] else ""))
         for c in comparisons], markdown=True)
    return f"""
## Search methods compared at equal targets

One value per search (its accuracy averaged over the training seeds); the intervals are bootstrap 95%
percentile intervals of the difference of means, resampling searches. A difference is called
significant only when its interval excludes 0. Methods that land at different latencies differ in
accuracy for that reason too; "over the front" (each net's accuracy above the uniform nets' front at
its own measured latency) compares them at equal latency.

{table}
"""
