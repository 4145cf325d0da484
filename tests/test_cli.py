"""``python -m zoo`` as a user runs it: output formats, and every user error without a traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import EXAMPLES, run_cli


def assert_clean_error(r, *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: "), r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def test_list_json_and_table(zoo_file, hosted, tmp_path):
    cache = {"HF_HUB_CACHE": str(tmp_path / "c")}
    r = run_cli("list", "--json", "--zoo", str(zoo_file), env=cache)
    assert r.returncode == 0, r.stderr
    table = json.loads(r.stdout)  # zoo.features.zoo_table's JSON, as /zoo returns it
    rows = table["models"]
    assert [row["name"] for row in rows] == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert table["resolution"] == 224 and table["cached"]["resnet18"] is False
    assert rows[2]["params"] == 25557032 and rows[2]["depth"] == 50 and rows[0]["cached"] is False
    r = run_cli("download", "resnet18", "--zoo", str(zoo_file), env=cache)
    assert r.returncode == 0, r.stderr
    r = run_cli("list", "--zoo", str(zoo_file), env=cache)
    assert r.returncode == 0 and "resnet18" in r.stdout
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("resnet18 "))
    assert " yes " in line


def test_unknown_model():
    assert_clean_error(run_cli("classify", str(EXAMPLES / "chelsea.png"), "--model", "resnet51"),
                       "Unknown model 'resnet51'", "resnet50")


def test_hub_unreachable_with_cold_cache(tmp_path, zoo_file):
    r = run_cli("classify", str(EXAMPLES / "chelsea.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path)})
    assert_clean_error(r, "Cannot reach the Hugging Face Hub (http://127.0.0.1:9)", "resnet18", "not in the cache")


def test_builtin_model_when_the_hub_is_unreachable(tmp_path):
    # What a newcomer sees with the real registry and no network.
    r = run_cli("classify", str(EXAMPLES / "chelsea.png"), "--json",
                env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path)})
    assert_clean_error(r, "timm/resnet50.tv_in1k")
    assert r.stdout == ""


def test_offline_with_cold_cache(tmp_path, zoo_file):
    r = run_cli("classify", str(EXAMPLES / "chelsea.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)})
    assert_clean_error(r, "Offline mode is on (HF_HUB_OFFLINE=1)", "python -m zoo download resnet18")


def test_image_path_missing(zoo_file):
    assert_clean_error(run_cli("classify", "no/such/photo.jpg", "--zoo", str(zoo_file)),
                       "no/such/photo.jpg does not exist")


def test_not_an_image(tmp_path, zoo_file):
    fake = tmp_path / "photo.jpg"
    fake.write_bytes(b"this is text, not a JPEG\n" * 10)
    assert_clean_error(run_cli("classify", str(fake), "--zoo", str(zoo_file)), "photo.jpg is not an image")


def test_malformed_zoo_file(tmp_path):
    bad = tmp_path / "zoo.toml"
    bad.write_text("[[model]]\nname = 'x'\narch = resnet50\n")
    assert_clean_error(run_cli("list", "--zoo", str(bad)), "not valid TOML", "line 3")


def test_download_requires_names():
    assert_clean_error(run_cli("download"), "--all")


def test_explain_json_and_npy(tmp_path, zoo_file, hosted):
    npy, png = tmp_path / "map.npy", tmp_path / "overlay.png"
    r = run_cli("explain", str(EXAMPLES / "chelsea.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--method", "cam", "--target", "tabby", "--npy", str(npy), "--out", str(png), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == "resnet18" and out["method"] == "cam" and out["shape"] == [7, 7]
    assert out["target"]["index"] == 281 and out["target"]["label"] == "tabby"
    raw = np.load(npy)
    assert raw.dtype == np.float32 and raw.shape == (7, 7)
    assert png.stat().st_size > 1000


def test_explain_unknown_class_lists_close_matches(zoo_file, hosted):
    r = run_cli("explain", str(EXAMPLES / "chelsea.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--target", "tabby cot")
    assert_clean_error(r, "Unknown class 'tabby cot'", "tabby")


@pytest.mark.parametrize("args", [["stats", "--json"], ["stats", "--json", "--stages", "resnet50"]])
def test_stats_json_offline_with_empty_cache(tmp_path, args):
    r = run_cli(*args, env={"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    if "--stages" in args:  # the model's whole row, with its stages
        assert rows["name"] == "resnet50" and rows["params"] == 25557032
        stages = rows["stages"]
        assert [s["stage"] for s in stages] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"]
        assert {"stage", "output_size", "params", "macs"} <= set(stages[0])
    else:  # the zoo table's JSON (zoo.features.zoo_table), as `list --json` and /zoo give it
        assert rows["resolution"] == 224
        rows = rows["models"]
        assert {"name", "params", "macs", "flops", "paper_flops", "top1", "top5"} <= set(rows[0])
        assert [r["params"] for r in rows] == [11689512, 21797672, 25557032, 44549160, 60192808]


def test_list_with_a_fine_tuned_head(tmp_path, capsys, monkeypatch):
    """The README's 3-label "flowers" entry: its fc has 3 outputs, and the list says so."""
    from zoo import stats
    from zoo.cli import main

    calls: list[tuple] = []
    real = stats.model_stats
    monkeypatch.setattr(stats, "model_stats", lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    f = tmp_path / "zoo.toml"
    f.write_text('[[model]]\nname = "flowers"\narch = "resnet18"\nrepo = "me/flowers-resnet18"\n'
                 'labels = ["daisy", "rose", "tulip"]\n')
    assert main(["list", "--json", "--zoo", str(f)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    fc_1000, fc_3 = 512 * 1000 + 1000, 512 * 3 + 3
    assert rows["flowers"]["params"] == 11689512 - fc_1000 + fc_3
    assert rows["resnet18"]["params"] == 11689512
    # counted at the default resolution, never at "num_classes" pixels
    def resolution(a: tuple, k: dict) -> int:
        return k.get("resolution", a[1] if len(a) > 1 else 224)

    def classes(a: tuple, k: dict) -> int:
        return k.get("num_classes", a[2] if len(a) > 2 else 1000)

    assert calls and all(resolution(a, k) == 224 for a, k in calls), calls
    assert sorted({classes(a, k) for a, k in calls}) == [3, 1000], calls


@pytest.mark.parametrize("args, message", [
    (["--method", "occlusion", "--window", "8", "--stride", "4"], "3025 window positions"),
    (["--method", "integrated-gradients", "--steps", "512"], "between 4 and 64 steps"),
])
def test_explain_parameters_over_the_limits(tmp_path, args, message):
    # refused before any weights are fetched: the Hub here is unreachable
    r = run_cli("explain", str(EXAMPLES / "chelsea.png"), "--model", "resnet18", *args,
                env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path)})
    assert_clean_error(r, message)


def test_download_draws_a_progress_bar_on_a_terminal_only(zoo_file, hosted, tmp_path):
    """Issue 17, item 12: with stderr a terminal (a pseudo-terminal here), `download` draws its
    own bar, rewritten in place; into a pipe it writes the phases only, one line each."""
    import os
    import pty
    import subprocess
    import sys

    from conftest import _ROOT

    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "tty")}
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "zoo", "download", "resnet18", "--zoo", str(zoo_file)],
                                cwd=_ROOT, env=env, stdout=subprocess.PIPE, stderr=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=120) == 0
    finally:
        os.close(leader)
    err = b"".join(chunks).decode()
    assert "Downloading resnet18 weights" in err
    assert "\r[" in err and "] 100%  Downloading resnet18:" in err, err
    assert "Verifying resnet18 (sha256)" in err

    r = run_cli("download", "resnet18", "--force", "--zoo", str(zoo_file),
                env={"HF_HUB_CACHE": str(tmp_path / "pipe")})
    assert r.returncode == 0, r.stderr
    assert "Downloading resnet18 weights" in r.stderr and "\r" not in r.stderr and "%" not in r.stderr
    assert r.stdout.startswith("resnet18: ")


def test_progress_printer_redraws_one_line():
    import io

    from zoo.commands.common import ProgressPrinter

    out = io.StringIO()
    p = ProgressPrinter(out, tty=True, interval_s=0)
    p(0.0, "Downloading x weights")
    p(0.5, "Downloading x: 5 / 10 MB")
    p(1.0, "Downloading x: 10 / 10 MB")
    p(None, "Loading x onto cpu")
    lines = out.getvalue().split("\n")
    assert lines[0] == "Downloading x weights"
    assert lines[1].startswith("\r[############------------]  50%") and "\r[########################] 100%" in lines[1]
    assert lines[2] == "Loading x onto cpu"
    quiet = io.StringIO()
    q = ProgressPrinter(quiet, tty=False)
    q(0.5, "Downloading x: 5 / 10 MB")
    assert quiet.getvalue() == ""


def test_rank_prints_the_methods_best_first(zoo_file, hosted, capsys):
    """``zoo rank``: the Method ranking's request; the table lists the methods in the order of --sort."""
    from zoo.cli import main

    assert main(["rank", str(EXAMPLES / "chelsea.png"), "--model", "resnet18", "--methods", "cam", "saliency",
                 "--sort", "insertion", "--device", "cpu", "--precision", "fp32", "--zoo", str(zoo_file)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["cam"], ["saliency"])]
    assert len(rows) == 2 and "best first by insertion" in out
    insertion = [float(r[-2]) for r in rows]  # method, layer, deletion, insertion, ROAD
    assert insertion == sorted(insertion, reverse=True)


def test_robustness_one_image_refuses_a_folder_run_s_options(zoo_file, tmp_path, capsys):
    from zoo.cli import main

    image = str(EXAMPLES / "chelsea.png")
    for args, message in ((["--sweep", image, image], "take one image, not 2 paths"),
                          (["--sweep", "--corruption", "fog", image], "choose one of them"),
                          (["--sweep", "--method", "cam", image], "are for one corruption"),
                          (["--corruption", "fog", "--out", str(tmp_path / "x.jsonl"), image], "for a folder run"),
                          (["--severity", "2", image], "add --corruption NAME")):
        assert main(["robustness", *args, "--zoo", str(zoo_file)]) == 2, args
        assert message in capsys.readouterr().err, args


def test_robustness_live_and_sweep_print_a_table(zoo_file, hosted, capsys):
    from zoo.cli import main

    common = [str(EXAMPLES / "chelsea.png"), "--models", "resnet18", "--device", "cpu", "--precision", "fp32",
              "--zoo", str(zoo_file)]
    assert main(["robustness", *common, "--corruption", "fog", "--severity", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Fog, severity 2 (crop seed ") and "\nresnet18 " in out
    assert main(["robustness", *common, "--sweep", "--corruptions", "fog", "--severities", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "severities 1, 2; seed 0" in out and out.splitlines()[4].startswith("Fog")
