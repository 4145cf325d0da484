"""What the Method ranking tab shows, from ``zoo.features.rank``'s rankings: plain functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.explain import METHODS
from zoo.faithfulness import Faithfulness
from zoo.features.rank import Ranked, Ranking
from zoo.render import overlay_crop, save_png

from ..format import SCORES_DISAGREE, method_choice, road_text
from ..charts import csv_files, faithfulness_curves

# What the tab ticks: the methods that answer in seconds on a CPU, and Edges, the floor every
# method should beat (it ignores the network). The rest are one click away ("Tick every method"),
# the estimate says what they cost. (All of them took about 3 minutes on a CPU.)
QUICK = ("cam", "gradcam", "saliency", "edges")
SORT_CHOICES = [("Deletion AUC (lower is better)", "deletion"), ("Insertion AUC (higher is better)", "insertion"),
                ("ROAD (higher is better)", "road")]
RANK_HEADERS = ["rank", "method", "deletion AUC (lower is better)", "insertion AUC (higher is better)",
                "ROAD (higher is better)", "map s", "scoring s"]
RANK_COLUMN_WIDTHS = [56, 150, 150, 160, 110, 70, 90]  # 786 px: the box is 798 px wide at 1400 px


def choices(zoo: Any, model: str) -> list[tuple[str, str]]:
    """The methods to tick; Score-CAM's label counts its forwards for ``model`` (514 on ResNet-18,
    2050 on ResNet-50)."""
    spec = zoo.get(model) if model in zoo else None
    return [method_choice(name, spec) for name in METHODS]


def scoring_seconds(f: Faithfulness) -> float:
    return f.seconds + (f.road.seconds if f.road else 0.0)


def rank_caption(place: int, r: Ranked) -> str:
    f = r.faithfulness
    # Short: a thumbnail shows ~40 characters; the table beside it has the full labels.
    return (f"{place}. {r.method}: deletion {f.deletion_auc:.3f}, insertion {f.insertion_auc:.3f}, "
            f"ROAD {road_text(f)} ({r.explanation.seconds:.1f} s + {scoring_seconds(f):.1f} s scoring)")


def rank_table(entries: list[Ranked]) -> list[list[Any]]:
    return [[i + 1, METHODS[r.method].label, f"{r.faithfulness.deletion_auc:.3f}",
             f"{r.faithfulness.insertion_auc:.3f}", road_text(r.faithfulness), f"{r.explanation.seconds:.2f}",
             f"{scoring_seconds(r.faithfulness):.2f}"]
            for i, r in enumerate(entries)]


def ranking_markdown(ranking: Ranking, total: int, by: str) -> str:
    t = ranking.target
    done = len(ranking.entries)
    head = (f"**{ranking.run.model}** · maps for **{t.label}** (class {t.index}, p = {t.prob:.3f}) · "
            f"{done} of {total} methods scored")
    key = {"deletion": "deletion AUC, lowest first (the class falls fastest when the map's top pixels are removed)",
           "insertion": "insertion AUC, highest first (the class returns fastest when the map's top pixels are "
                        "restored)",
           "road": "ROAD, highest first (imputing the map's top pixels hurts the class most, its bottom pixels "
                   "least)"}[by]
    return (f"{head} · sorted by {key}. Each score costs about 50 forwards and ROAD's imputation.\n\n"
            f"{SCORES_DISAGREE}")


def picture(folder: Path, ranking: Ranking, r: Ranked) -> str:
    """One method's map on the crop, as a PNG in ``folder``."""
    name = f"{ranking.run.model}-{r.method}-{ranking.target.index}.png"
    return str(save_png(overlay_crop(ranking.run, r.explanation.raw, "jet", 0.5, size=256,
                                     signed=METHODS[r.method].signed), Path(folder) / name))


def pictures_of(folder: Path, ranking: Ranking, pictures: dict[str, str]) -> dict[str, str]:
    """``pictures`` (method -> PNG) with the maps scored since, drawn once each."""
    for r in ranking.entries:
        if r.method not in pictures:
            pictures[r.method] = picture(folder, ranking, r)
    return pictures


def gallery(ranking: Ranking, by: str, pictures: dict[str, str]) -> list[tuple[str, str]]:
    """(picture, caption) per method, best first."""
    return [(pictures[r.method], rank_caption(i + 1, r)) for i, r in enumerate(ranking.sorted(by))]


def render(ranking: Ranking, by: str, total: int, pictures: dict[str, str], folder: Path
           ) -> tuple[list[tuple[str, str]], list[list[Any]], str, Any, list[str]]:
    """Gallery (best first), table rows, text, curves and the curves' data files for the ranking so far."""
    entries = ranking.sorted(by)
    curves = faithfulness_curves([(METHODS[r.method].label, r.faithfulness) for r in entries],
                                 ranking.target.label, name=f"rank-curves-{ranking.run.model}-{ranking.target.index}",
                                 areas=False)  # 13 methods' areas made the legend taller than the plot
    # The curves' data as CSV, beside the pictures of this run (the chart's camera icon saves its PNG).
    return (gallery(ranking, by, pictures), rank_table(entries), ranking_markdown(ranking, total, by), curves,
            csv_files([curves], folder))
