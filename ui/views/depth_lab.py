"""Depth lab: ``zoo.analysis.Analysis`` results as the tab shows them (charts, a table, JSON), as plain
functions: no gradio here, so each is tested without building the page."""

from __future__ import annotations

from typing import Any, Callable

import plotly.graph_objects as go

from zoo.analysis import Analysis, BlockStats, relative_depths
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
                        f"<sup>{charts._literal(_target_name(done))}; LRP {', '.join(composites)}</sup>",
                        "relative depth (block number / number of blocks)",
                        "share of the block's relevance into F(x)", height=460)
    for i, a in enumerate(done):
        shares = [r.share_branch for r in a.relevance.blocks]
        custom = _block_custom(a)
        custom["into the shortcut"] = [r.shortcut for r in a.relevance.blocks]
        custom["into the branch"] = [r.branch for r in a.relevance.blocks]
        charts.add_line(fig, name=_legend_name(a), i=i, x=relative_depths(a), y=shares, custom=custom,
                        marker=_down_markers(a),
                        hover=charts.hover(charts.depth_label(a.model),
                                           ("block", "%{customdata[0]} (%{customdata[1]})"),
                                           ("share into the branch", "%{y:.2f}"),
                                           ("relevance into the shortcut", "%{customdata[2]:.3g}"),
                                           ("relevance into the branch", "%{customdata[3]:.3g}")))
    _down_legend(fig)
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
    """The seven charts (the six of ``lab_charts``, then the relevance share; None where there is
    nothing to draw yet) and the table."""
    text = depth_lab_markdown(done)
    flow = relevance_markdown(done)
    return (*lab_charts(done), relevance_share(done), text + ("\n\n" + flow if flow else ""))


# --- the six charts of the statistics (Plotly, built with ui.charts' helpers) ----------------

DOWN_LABEL = "downsampling block (projection shortcut)"


def _legend_name(a: Analysis) -> str:
    return f"{a.model} ({a.num_blocks} blocks)"


def _down_markers(a: Analysis) -> dict:
    return dict(symbol=["x" if b.downsample else "circle" for b in a.blocks],
                size=[11 if b.downsample else 6 for b in a.blocks],
                line=dict(color="black", width=[1 if b.downsample else 0 for b in a.blocks]))


def _down_legend(fig: go.Figure) -> None:
    """A legend entry that explains the crosses (it hides nothing)."""
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=DOWN_LABEL, hoverinfo="skip",
                             marker=dict(symbol="x", size=11, color="white", line=dict(color="black", width=1))))


def _block_custom(a: Analysis) -> dict[str, list]:
    return {"block": [b.name for b in a.blocks],
            "kind": ["downsampling block" if b.downsample else "identity block" for b in a.blocks]}


def per_block(analyses: list[Analysis], value: Callable[[BlockStats], float], title: str, ylabel: str,
              log: bool = False, name: str = "depth-lab", value_label: str = "value",
              value_format: str = ".3g") -> charts.Chart | None:
    """``value`` of every block against relative depth (block / blocks), one line per model."""
    if not analyses:
        return None
    fig = charts.figure(name, title, "relative depth (block number / number of blocks)", ylabel, log_y=log)
    for i, a in enumerate(analyses):
        charts.add_line(fig, name=_legend_name(a), i=i, x=relative_depths(a), y=[value(b) for b in a.blocks],
                 custom=_block_custom(a), marker=_down_markers(a),
                 hover=charts.hover(charts.depth_label(a.model), ("block", "%{customdata[0]} (%{customdata[1]})"),
                             (value_label, f"%{{y:{value_format}}}"), ("relative depth", "%{x:.2f}")))
    if any(b.downsample for a in analyses for b in a.blocks):
        _down_legend(fig)
    fig.update_xaxes(range=[0, 1.03])
    return fig


def response_std(analyses: list[Analysis]) -> charts.Chart | None:
    # Log scale: depths can differ by orders of magnitude, and the claim is about ratios.
    return per_block(analyses, lambda b: b.response_std, "Std of each block's 3×3 output after BN",
                     "std of bn2 output (log scale)", log=True, name="depth-lab-response-std",
                     value_label="response std")


def response_std_sorted(analyses: list[Analysis]) -> charts.Chart | None:
    """Each model's responses sorted from largest to smallest, against the rank (paper Fig. 7, bottom)."""
    if not analyses:
        return None
    fig = charts.figure("depth-lab-response-sorted", "Layer responses, sorted (paper's Fig. 7)",
                 "blocks, sorted by response (largest first)", "std of bn2 output (log scale)", log_y=True)
    for i, a in enumerate(analyses):
        order = sorted(a.blocks, key=lambda b: b.response_std, reverse=True)
        charts.add_line(fig, name=_legend_name(a), i=i, x=list(range(1, len(order) + 1)), y=[b.response_std for b in order],
                 custom={"block": [b.name for b in order]}, marker=dict(size=4),
                 hover=charts.hover(charts.depth_label(a.model), ("rank", "%{x}"), ("block", "%{customdata[0]}"),
                             ("response std", "%{y:.3g}")))
    return fig


def residual_ratio(analyses: list[Analysis]) -> charts.Chart | None:
    return per_block(analyses, lambda b: b.residual_ratio, "How much each block changes its input",
                     "‖F(x)‖ / ‖shortcut(x)‖", name="depth-lab-residual-ratio", value_label="‖F(x)‖ / ‖x‖")


def grad_norm(analyses: list[Analysis]) -> charts.Chart | None:
    return per_block(analyses, lambda b: b.grad_norm, "Gradient of the target logit at each block",
                     "‖∂z_target / ∂x_block‖ (log scale)", log=True, name="depth-lab-gradient",
                     value_label="gradient norm")


def _target_name(analyses: list[Analysis]) -> str:
    """The shared target's name, for titles; the models may each use their own top-1."""
    return (f"target: {analyses[0].target.label}" if len({a.target.index for a in analyses}) == 1
            else "target: each model's top-1")


def lesion(analyses: list[Analysis]) -> charts.Chart | None:
    """p(target) with each block's residual branch deleted; dashed: the undamaged network."""
    done = [a for a in analyses if a.blocks and a.blocks[0].lesion is not None]
    if not done:
        return None
    fig = charts.figure("depth-lab-lesion", f"Lesion study: one block's residual branch deleted<br>"
                 f"<sup>{charts._literal(_target_name(done))}</sup>",
                 "relative depth (block number / number of blocks)", "p(target) with that block deleted",
                 height=460)
    for i, a in enumerate(done):
        name = _legend_name(a)
        custom = _block_custom(a)
        custom["top-1 with it deleted"] = [b.lesion.top1.label for b in a.blocks]
        charts.add_line(fig, name=name, i=i, x=relative_depths(a), y=[b.lesion.prob for b in a.blocks], custom=custom,
                 marker=_down_markers(a),
                 hover=charts.hover(charts.depth_label(a.model), ("block deleted", "%{customdata[0]} (%{customdata[1]})"),
                             ("p(target)", "%{y:.3f}"), ("top-1", "%{customdata[2]}")))
        if a.baseline_prob is not None:
            charts.add_line(fig, name=f"{a.model}: no block deleted", i=i, x=[0, 1.03], y=[a.baseline_prob] * 2,
                     mode="lines", dash="dash", group=name, showlegend=False,
                     hover=charts.hover(charts.depth_label(a.model), ("no block deleted: p(target)", "%{y:.3f}")))
    _down_legend(fig)
    fig.update_xaxes(range=[0, 1.03])
    fig.update_yaxes(range=[-0.02, 1.02])
    return fig


def deletions(analyses: list[Analysis]) -> charts.Chart | None:
    """Mean p(target) and the share of draws keeping the top-1, against k random identity blocks deleted."""
    done = [a for a in analyses if a.deletions]
    if not done:
        return None
    fig = charts.figure("depth-lab-deletions", f"k random identity blocks deleted at once<br>"
                 f"<sup>{charts._literal(_target_name(done))}</sup>", height=500, rows=2, cols=1, shared_xaxes=True,
                 vertical_spacing=0.08)
    ks = sorted({d.k for a in done for d in a.deletions})
    for i, a in enumerate(done):
        name = _legend_name(a)
        x = [str(d.k) for d in a.deletions]  # categories: k doubles from one point to the next
        draws = {"draws": [d.draws for d in a.deletions]}
        charts.add_line(fig, name=name, i=i, x=x, y=[d.prob_mean for d in a.deletions], custom=draws, row=1, col=1,
                 hover=charts.hover(charts.depth_label(a.model), ("blocks deleted", "k = %{x}"), ("mean p(target)", "%{y:.3f}"),
                             ("draws", "%{customdata[0]}")))
        charts.add_line(fig, name=name, i=i, x=x, y=[d.top1_kept * 100 for d in a.deletions], custom=draws, row=2, col=1,
                 showlegend=False,
                 hover=charts.hover(charts.depth_label(a.model), ("blocks deleted", "k = %{x}"),
                             ("top-1 unchanged", "%{y:.0f} % of draws"), ("draws", "%{customdata[0]}")))
    order = dict(type="category", categoryorder="array", categoryarray=[str(k) for k in ks])
    fig.update_xaxes(**order)
    fig.update_xaxes(title_text="k, blocks deleted at once (seeded random draws)", row=2, col=1)
    fig.update_yaxes(title_text="mean p(target)", range=[-0.02, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="top-1 unchanged (% of draws)", range=[-2, 102], row=2, col=1)
    return fig


def lab_charts(analyses: list[Analysis]) -> list[charts.Chart | None]:
    """The six Depth lab charts, in the tab's order."""
    return [response_std(analyses), response_std_sorted(analyses), residual_ratio(analyses), grad_norm(analyses),
            lesion(analyses), deletions(analyses)]


# --- Faithfulness ------------------------------------------------------------------------------
