"""Error surfaces: ``zoo.landscape.Landscape`` results as the tab shows them, as plain functions:
no gradio here, so each is tested without building the page."""

from __future__ import annotations

from typing import Any

from zoo.landscape import Landscape, Step


def landscape_markdown(done: list[Landscape], total: int) -> str:
    """What the error surfaces so far say: each depth's loss at its weights and around them."""
    if not done:
        return ""
    first = done[0]
    shape = f"{len(first.alphas)} × {len(first.betas)}" if first.dims == 2 else f"{len(first.alphas)} points along δ"
    targets = "; ".join(f"{i.name}: **{i.label}** ({'your class' if i.chosen == 'given' else i.chosen})"
                        for i in first.images[:4]) + (" …" if len(first.images) > 4 else "")
    lines = [f"**{len(done)} of {total} depths** · grid {shape}, α, β ∈ [−{first.span:g}, {first.span:g}], seed "
             f"{first.seed}, fp32 on `{first.device}` · targets ({first.model}): {targets}"]
    for ls in done:
        z = [v for row in ls.loss for v in row]
        finite = [v for v in z if v == v and abs(v) != float("inf")]
        edge = max(finite) if finite else float("nan")
        lines.append(f"* **{ls.model}**: loss {ls.center_loss:.3g} at its weights, up to {edge:.3g} on the grid; "
                     f"{ls.points} points, {ls.point_seconds * 1000:.0f} ms each, {ls.seconds:.0f} s in all")
    notes = dict.fromkeys(n for ls in done for n in ls.notes)
    lines += [f"Note: {n}" for n in notes]
    if first.skipped:  # files that were not images: named with the reason, not silently dropped
        lines.append("Skipped: " + "; ".join(f"{s.name} ({s.reason})" for s in first.skipped[:5])
                     + (" …" if len(first.skipped) > 5 else ""))
    return "\n".join(lines)


def numbers(done: list[Landscape]) -> dict[str, Any]:
    """The "numbers" box: each finished depth's JSON (the feature's one JSON per model)."""
    return {"models": [d.to_json() for d in done]}


def running(step: Step, text: str) -> str:
    """Where the run is, above what the finished depths said."""
    return f"*Running: {step.message}*\n\n{text}"
