"""ui/views/robustness.py without gradio: what the Robustness tab shows, from results built here."""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace

import numpy as np

from ui.views import robustness as views
from zoo.features import robustness as feature
from zoo.robustness_folder import SampleResult
from zoo.robustness_sweep import Sweep, SweepProgress


def sweep(done: int = 5) -> Sweep:
    labels = tuple(f"class{i}" for i in range(3))
    top1 = np.array([[[0, 1, 1, 1, 1]], [[0, 0, 0, 0, 2]]])  # (M=2, C=1, S=5)
    p = np.linspace(0.9, 0.1, 5)[None, None].repeat(2, 0)
    return Sweep(("resnet18", "resnet152"), (18, 152), ("fog",), (1, 2, 3, 4, 5), labels, 7, 0, "consensus",
                 np.array([0, 0]), np.array([0.9, 0.8]), np.array([0.9, 0.8]), top1, p, p, done, 5)


def test_an_unlabelled_folder_shows_how_often_the_top1_changed():
    """Issue 31 item 4: without labels the tab shows what needs none (as the CLI prints it), not dashes."""
    changed = np.array([[[0.0, 0.5], [1.0, 1.0]], [[0.0, 0.0], [0.5, 0.5]]])  # (models, corruptions, severities)
    s = SimpleNamespace(models=("resnet18", "resnet34"), corruptions=("gaussian_noise", "fog"), severities=(1, 2),
                        changed=changed, labelled=0, images=2, partial=False, seed=0, device="cpu", precision="fp32",
                        seconds=1.0, notes=(), skipped=())
    assert views.changed_summary(s) == [["resnet18", "62.5 %"], ["resnet34", "25.0 %"]]
    rows = views.changed_rows(s)
    assert rows == [[views.LABELS["gaussian_noise"], "25.0 %", "0.0 %"], [views.LABELS["fog"], "100.0 %", "50.0 %"]]
    text = views.folder_markdown(s)
    assert "how often each corruption changes" in text and "Labels would add accuracy, CE and mCE" in text
    (summary, headers), (c_rows, c_headers, label), chart = views.folder_tables(s)
    assert headers == views.CHANGED_HEADERS and c_rows == rows and c_headers == ["corruption", "resnet18", "resnet34"]
    assert "changed" in label and chart is not None


def test_breaking_points_and_the_sentence_name_depths_as_the_page_does():
    s = sweep()
    assert views.breaking_rows(s) == [["Fog", "2", "5"]]  # the lowest severity whose top-1 changed
    text = views.sweep_markdown(s, "fog")
    assert "ResNet-152" in text and "ResNet-18" in text and "seed 7" in text and "Partial" not in text
    assert "Partial results: 3 of 5" in views.sweep_markdown(sweep(done=3), "fog")
    rows = list(csv.reader(io.StringIO(views.sweep_csv(s))))
    assert rows[0][0] == "model" and len(rows) == 1 + 2 * (1 + 5)  # header, then per depth: clean + 5 severities
    assert [r[-1] for r in rows if r[0] == "resnet18"] == ["no", "no", "yes", "yes", "yes", "yes"]


def test_the_running_line_names_the_corruption_only_when_the_message_does_not():
    assert views.running_text(SweepProgress(0.5, "Fog, severity 2: 8 crops", "fog"), "") == \
        "*Running: Fog, severity 2: 8 crops*\n\n"
    assert views.running_text(SweepProgress(0.5, "the clean crop", "snow"), "before").startswith(
        "*Running: Snow: the clean crop*")


def test_the_folder_download_is_the_cli_json_lines():
    """One writer (zoo.features.robustness.json_lines): every prediction, then {"summary": to_json()}."""
    labels = ("a", "b", "c")
    sample = SampleResult(0, "x.png", "fog", 1, 11, 2, np.array([[2, 0, 1]]), np.array([[0.7, 0.2, 0.1]]))
    summary = SimpleNamespace(models=("resnet18",), to_json=lambda: {"models": ["resnet18"], "images": 1})
    lines = [json.loads(x) for x in feature.json_lines([sample], summary, labels, top_k=2).splitlines()]
    assert lines[-1] == {"summary": {"models": ["resnet18"], "images": 1}}
    assert lines[0]["file"] == "x.png" and lines[0]["correct"] is True and lines[0]["label"] == "c"
    assert [p["label"] for p in lines[0]["predictions"]] == ["c", "a"]
