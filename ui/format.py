"""Turn ``zoo`` results into what Gradio components show. Presentation only."""

from __future__ import annotations


from zoo.explain import METHODS, STAGES, stage_channels
from zoo.faithfulness import Faithfulness
from zoo.limits import Limits, duration_text, seconds_of
from zoo.registry import ModelSpec
from zoo.costs import Estimate


def duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s" if seconds >= 10 else f"about {seconds:.1f} s"
    return f"about {seconds / 60:.0f} min"


def estimate_markdown(est: Estimate, device: str, limits: Limits | None = None) -> str:
    """The cost of a run before it starts: seconds on this device when a forward was timed here,
    and whether this server's ceiling (``zoo.limits``) will refuse it."""
    passes = f"{est.forwards} forward pass{'' if est.forwards == 1 else 'es'}"  # a backward counts as two
    if est.seconds is None:
        text = f"Cost: {passes}. The time in seconds shows once a model has run on this device."
    else:
        text = f"Estimated time on {device}: **{duration(est.seconds)}** ({passes}, from {est.basis})."
    ceiling = limits.max_request_seconds if limits is not None else None
    if ceiling is not None and seconds_of(est.forwards, est.seconds)[0] > ceiling:
        text += (f" **Over this server's limit of {duration_text(ceiling)} per run: it will be refused.** Choose a "
                 "cheaper setting, or run the app on your own machine.")
    return text


def download_note(spec: ModelSpec) -> str:
    """After an estimate: a model not in the cache yet is downloaded first, which the estimate leaves out."""
    from zoo.hub import cached_path

    if cached_path(spec) is not None:
        return ""
    size = f" ({spec.size_bytes / 1e6:.0f} MB)" if spec.size_bytes else ""
    return (f" Not counted: {spec.name}'s weights{size} are not downloaded yet; its first use downloads them "
            "first, with a progress bar.")


def batch_estimate_markdown(est: Estimate | None, device: str, limits: Limits | None = None) -> str:
    """Under the Batch tab's Run button; ``est`` is None until files are picked."""
    if est is None:
        return "Cost: one forward pass per image and model. Pick the images to see the total."
    text = estimate_markdown(est, device, limits)
    if est.seconds is not None:  # priced from single-image forwards; batches amortise them
        text += " Batched forwards usually take less per image, so the run is likely shorter."
    return text


# --- faithfulness ---------------------------------------------------------------------

FAITHFULNESS_NOTE = ("deletion: lower is better; insertion: higher is better; ROAD: higher is better; costs "
                     "about 50 forwards and ROAD's imputation: up to half a minute on a CPU, the estimate under the button "
                     "counts it")
# When the scores disagree: the README's "Which score to trust" says the same at length.
SCORES_DISAGREE = ("When deletion/insertion and ROAD disagree, trust ROAD: deletion and insertion fill the removed "
                   "pixels with flat mean-colour patches, an input the network never saw in training, so part of "
                   "the drop they measure is the patch itself; ROAD fills them by interpolating the neighbours "
                   "(plus a little noise), which keeps the image plausible. Differences of a few hundredths in "
                   "any of the three are noise.")


def road_text(f: Faithfulness) -> str:
    """ROAD's combined score, or a dash when the map was scored without it."""
    return "–" if f.road is None else f"{f.road.combined:+.3f}"


def faithfulness_markdown(f: Faithfulness) -> str:
    """The two areas with how to read them, and what they cost."""
    return (f"**Deletion AUC {f.deletion_auc:.3f}** (lower is better: removing the map's top pixels first should "
            f"make the class fall fast) · **Insertion AUC {f.insertion_auc:.3f}** (higher is better: restoring "
            f"them first should bring it back fast) · {f.steps} steps, {f.forwards} forwards, "
            f"{f.seconds * 1000:.0f} ms" + ("" if f.road is None else
            f"\n\n**ROAD {f.road.combined:+.3f}** (higher is better: the class should fall when the most relevant "
            f"pixels are imputed, and stay when the least relevant are) · percentiles "
            f"{', '.join(map(str, f.road.percentiles))}, {f.road.forwards} forwards, {f.road.seconds * 1000:.0f} ms"
            f"\n\n{SCORES_DISAGREE}"))


def method_choice(name: str, spec: ModelSpec | None = None, layer: str = STAGES[-1]) -> tuple[str, str]:
    """(label, name) for a method picker; Score-CAM's label counts its forwards for ``spec``."""
    m = METHODS[name]
    if name in ("scorecam", "ablationcam") and spec is not None:
        channels = stage_channels(spec.arch, layer)
        return f"{m.label} — {channels + 2} forwards ({channels} channels of {layer}, + 2)", name
    return f"{m.label} — {m.cost}", name


# --- Batch tab -----------------------------------------------------------------------------


