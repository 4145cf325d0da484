"""Depth lab: ``zoo.analysis.Analysis`` results as the tab shows them (charts, a table, JSON), as plain
functions: no gradio here, so each is tested without building the page."""

from __future__ import annotations

from typing import Any

from zoo.analysis import Analysis, relative_depths
from zoo.costs import Estimate

from .. import charts
from ..format import estimate_markdown


def depth_lab_estimate(signal: Estimate, lesion: Estimate, device: str) -> str:
    """Under the Depth lab's buttons: what each of its two runs costs."""
    return (f"Signal analysis: {estimate_markdown(signal, device)}\n\n"
            f"Lesion study: {estimate_markdown(lesion, device)}")


def depth_lab_markdown(analyses: list[Analysis]) -> str:
    """Per model: the figures behind each Depth lab chart, and whether the paper's claims hold here."""
    if not analyses:
        return ""
    lesioned = any(a.blocks[0].lesion is not None for a in analyses)
    head = ["model", "blocks", "target (p)", "median response std", "median ‖F‖/‖x‖", "grad norm, first → last"]
    if lesioned:
        head += ["p, an identity block deleted (mean)", "p, a downsampling block deleted (mean)",
                 "top-1 kept, one block deleted"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    medians = []
    for a in analyses:
        stds = sorted(b.response_std for b in a.blocks)
        ratios = sorted(b.residual_ratio for b in a.blocks)
        medians.append(stds[len(stds) // 2])
        row = [a.model, str(a.num_blocks), f"{a.target.label} ({a.target.prob:.2f})", f"{medians[-1]:.3g}",
               f"{ratios[len(ratios) // 2]:.3g}", f"{a.blocks[0].grad_norm:.3g} → {a.blocks[-1].grad_norm:.3g}"]
        if lesioned and a.blocks[0].lesion is not None:
            ident = [b.lesion.prob for b in a.blocks if not b.downsample]
            down = [b.lesion.prob for b in a.blocks if b.downsample]
            kept = sum(b.lesion.top1.index == a.top1.index for b in a.blocks)
            row += [f"{sum(ident) / len(ident):.2f}" if ident else "–", f"{sum(down) / len(down):.2f}" if down else "–",
                    f"{kept} of {a.num_blocks}"]
        elif lesioned:
            row += ["–", "–", "–"]
        lines.append("| " + " | ".join(row) + " |")
    notes = []
    if len(analyses) > 1:
        steps = sum(b < a for a, b in zip(medians, medians[1:]))
        verdict = ("falls at every step, as the paper found" if steps == len(medians) - 1 else
                   f"falls at {steps} of {len(medians) - 1} steps: the paper's trend does not hold fully here")
        notes.append(f"**Responses vs depth**: the median response std ({', '.join(a.model for a in analyses)}) "
                     f"{verdict}.")
    if lesioned:
        notes.append("**Lesions**: dashed lines are the undamaged networks. Veit et al. expect one deleted identity "
                     "block to cost little and a deleted downsampling block (crosses) to cost most.")
    prec = {a.precision for a in analyses if a.blocks[0].lesion is not None or a.deletions}
    if prec:
        notes.append(f"Statistics and gradients in fp32; lesions in {', '.join(sorted(prec))}. "
                     f"Time: {', '.join(f'{a.model} {a.seconds:.1f} s' for a in analyses)}.")
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes)


def relevance_share(analyses: list[Analysis]) -> charts.Chart | None:
    """Per block, the share of the LRP relevance arriving at its output that flows into the residual
    branch (the rest: into the shortcut), one line per depth; None until a depth has its relevance flow.
    Beside the lesion curve: blocks whose branch carries little relevance should cost little to delete."""
    done = [a for a in analyses if a.relevance is not None]
    if not done:
        return None
    composites = sorted({a.relevance.composite for a in done})
    fig = charts.figure("depth-lab-relevance", f"Where relevance flows: into the residual branch<br>"
                        f"<sup>{charts._literal(charts._target_name(done))}; LRP {', '.join(composites)}</sup>",
                        "relative depth (block number / number of blocks)",
                        "share of the block's relevance into F(x)", height=460)
    for i, a in enumerate(done):
        shares = [r.share_branch for r in a.relevance.blocks]
        custom = charts._block_custom(a)
        custom["into the shortcut"] = [r.shortcut for r in a.relevance.blocks]
        custom["into the branch"] = [r.branch for r in a.relevance.blocks]
        charts.add_line(fig, name=charts._legend_name(a), i=i, x=relative_depths(a), y=shares, custom=custom,
                        marker=charts._down_markers(a),
                        hover=charts.hover(charts.depth_label(a.model),
                                           ("block", "%{customdata[0]} (%{customdata[1]})"),
                                           ("share into the branch", "%{y:.2f}"),
                                           ("relevance into the shortcut", "%{customdata[2]:.3g}"),
                                           ("relevance into the branch", "%{customdata[3]:.3g}")))
    charts._down_legend(fig)
    fig.update_xaxes(range=[0, 1.03])
    return fig


def relevance_markdown(analyses: list[Analysis]) -> str:
    """A line per depth with its relevance flow: the median branch share and how much relevance reached the pixels."""
    rows = []
    for a in analyses:
        if a.relevance is None:
            continue
        shares = sorted(r.share_branch for r in a.relevance.blocks if r.share_branch is not None)
        median = f"{shares[len(shares) // 2]:.2f}" if shares else "–"
        rows.append(f"{a.model}: median share into the branch {median}; relevance conserved to the pixels "
                    f"{a.relevance.conservation:.0%} ({a.relevance.composite})")
    if not rows:
        return ""
    return ("**Relevance flow** (LRP, the Norm rule at each block's sum: relevance splits in proportion to what the "
            "shortcut and the branch contributed). " + "; ".join(rows) + ". A share is not a lesion: compare it "
            "with the lesion chart, where deleting a block whose branch carries little relevance should cost little.")


def numbers(done: list[Analysis]) -> dict[str, Any]:
    """The "numbers" box: each finished depth's JSON (the feature's one JSON per model)."""
    return {"models": [a.to_json() for a in done]}


def render(done: list[Analysis]) -> tuple:
    """The seven charts (the six of ``charts.depth_lab``, then the relevance share; None where there is
    nothing to draw yet) and the table."""
    text = depth_lab_markdown(done)
    flow = relevance_markdown(done)
    return (*charts.depth_lab(done), relevance_share(done), text + ("\n\n" + flow if flow else ""))
