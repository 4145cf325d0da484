"""About: the degradation problem, residual learning, how to read the maps (layout only; the credits' text is
``ui.views.about``'s)."""

from __future__ import annotations

import gradio as gr

from ..common import Context
from ..views.about import credits_markdown

TITLE = "About"
PAPER = "https://arxiv.org/abs/1512.03385"

ABOUT = f"""
### Why depth needed a trick
Stacking more plain layers made networks *worse*, even on the training set: a 56-layer plain net trained
to a higher error than a 20-layer one. This **degradation problem** is not overfitting; deep plain nets are
simply hard to optimise.

### Residual learning
He et al. ([Deep Residual Learning for Image Recognition, 2015]({PAPER})) let each block learn a residual
F(x) and output **F(x) + x** through an identity shortcut. If the best thing a block can do is nothing, it
only has to push F towards zero. With this, 152 layers train well and beat shallower nets, while bottleneck
blocks (1×1, 3×3, 1×1) keep ResNet-50/101/152 cheaper than VGG-16/19.

### Reading the maps
* **CAM**: the network ends in global average pooling and one linear layer, so the class score is exactly
  the mean over a 7×7 map, Σₖ wₖ·fₖ(x, y). Each cell covers a 32×32 patch of the 224×224 crop. Free.
* **Grad-CAM** weighs layer4's channels by gradients instead; **Guided Grad-CAM**, **Saliency**,
  **Integrated Gradients** and **Occlusion** work at pixel level and cost more passes.
* The model sees only a resized **center crop**; the whole-image view outlines it and hatches what the model
  never saw. Use the **shared colour scale** in *Compare depths* to compare magnitudes across depths.

Weights: the original torchvision ImageNet weights, from the Hugging Face Hub as safetensors, and
checked by sha256 before they are loaded. Example photos: credits below.
"""


def build(ctx: Context) -> None:
    """Static text; called inside its ``gr.Tab``."""
    gr.Markdown(ABOUT, elem_id="about-text")
    with gr.Accordion("Credits for the example photographs", open=False, elem_id="credits"):
        gr.Markdown(credits_markdown())
