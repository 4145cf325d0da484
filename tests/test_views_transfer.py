"""ui/views/transfer.py: the evidence-transfer heatmap and its reading, without gradio or a model."""

from __future__ import annotations

import math

from ui.views.transfer import transfer_heatmap, transfer_markdown

T = {"models": ["resnet18", "resnet50"], "target": 281, "deletion": [[1.0, 1.4], [0.5, 1.0]],
     "deletion_auc": [[0.2, 0.14], [0.1, 0.1]], "road": None, "road_morf": None,
     "reading": "ResNet-18's map removes ResNet-50's confidence 40 % more slowly.", "notes": ["crops differ"],
     "forwards": 78, "seconds": 1.0}


def test_heatmap_is_log2_of_the_ratio_with_the_ratio_as_text():
    fig = transfer_heatmap(T)
    trace = fig.data[0]
    assert list(trace.x) == T["models"] and list(trace.y) == T["models"]
    assert trace.z[0][1] == math.log2(1.4) and trace.z[1][0] == -1.0 and trace.z[0][0] == 0.0
    assert trace.text[0][1] == "1.40" and trace.zmid == 0.0


def test_no_heatmap_without_pairs_or_matrix():
    assert transfer_heatmap(T, "road") is None
    assert transfer_heatmap({**T, "models": ["resnet18"], "deletion": [[1.0]]}) is None
    undefined = transfer_heatmap({**T, "deletion": [[1.0, None], [0.5, 1.0]]})
    assert undefined.data[0].z[0][1] is None and undefined.data[0].text[0][1] == "–"


def test_markdown_reads_the_sentence_and_notes():
    md = transfer_markdown(T)
    assert T["reading"] in md and "Note: crops differ" in md
