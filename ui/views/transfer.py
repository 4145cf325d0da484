"""Compare depths' evidence-transfer matrix (issue 34, item 4; ``zoo.transfer``) as the page shows it:
a depth x depth heatmap and its one-sentence reading. Plain functions, no gradio components."""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

from ..charts import Chart, _heatmap_axes, figure


def _as_json(transfer: Any) -> dict[str, Any]:
    return transfer.to_json() if hasattr(transfer, "to_json") else dict(transfer)


def transfer_heatmap(transfer: Any, key: str = "deletion") -> Chart | None:
    """Row i, column j: j's deletion AUC with pixels deleted in the order of i's map, over j's own
    (``key="road"``: ROAD's MoRF ratio). Coloured by log2 of the ratio, so 2x slower and 2x faster sit
    symmetrically about 1.0 (white); None without two depths or without that matrix."""
    t = _as_json(transfer)
    models, matrix = list(t["models"]), t.get(key)
    if len(models) < 2 or matrix is None:
        return None
    z = [[None if v is None or v <= 0 else math.log2(v) for v in row] for row in matrix]
    text = [["–" if v is None else f"{v:.2f}" for v in row] for row in matrix]
    what = "deletion AUC" if key == "deletion" else "ROAD MoRF mean"
    fig = figure(f"evidence-transfer-{key}", x="whose confidence is removed", y="whose map orders the pixels",
                 height=340 + 45 * len(models))
    fig.add_trace(go.Heatmap(
        z=z, x=models, y=models, zmid=0.0, zmin=-1.0, zmax=1.0, colorscale="RdBu", reversescale=True,
        name=f"{what} ratio", text=text, texttemplate="%{text}", textfont=dict(size=11 if len(models) <= 3 else 9),
        colorbar=dict(title=dict(text="× own", side="top"), thickness=10, tickvals=[-1, 0, 1],
                      ticktext=["½ (faster)", "1", "2 (slower)"]),
        hovertemplate=(f"<b>%{{y}}'s map on %{{x}}</b><br>{what}: %{{text}} × %{{x}}'s own map's<br>"
                       "(above 1: removes its confidence more slowly)<extra></extra>")))
    _heatmap_axes(fig, models)
    return fig


def transfer_markdown(transfer: Any) -> str:
    """The matrix's reading and its notes, for the Markdown under the heatmap."""
    t = _as_json(transfer)
    lines = [f"**Evidence transfer.** {t['reading']}"]
    lines += [f"Note: {n}" for n in t.get("notes", [])]
    return "\n\n".join(lines)
