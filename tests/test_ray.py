"""``--engine ray`` and the journal (``--out FILE.jsonl``, ``--resume``), on a real local Ray instance.

ResNet-18 only, at fp32, on a handful of small generated images: a Ray run gives the same
top-5 per image and model and the same summary as a local run; a run that loses an actor
midway finishes with every result once; a Ray run that fails, and a local run killed by a
signal, go on with ``--resume`` and end with every (image, model) line exactly once.
Skipped where Ray is not installed (``requirements-ray.txt``), except in CI, which installs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

try:
    import ray  # noqa: F401
except ImportError:
    if os.environ.get("CI"):  # CI installs requirements-ray.txt: a missing Ray there is a failure
        raise
    pytest.skip("Ray is not installed (pip install -r requirements-ray.txt)", allow_module_level=True)

from conftest import NO_NATIVE_BF16, _ROOT  # noqa: E402
from test_batch import write_images  # noqa: E402
from zoo import cli  # noqa: E402
from zoo.batch import Failed, Scored, gather, resolve_labels  # noqa: E402
from zoo.batch.journal import VERSION, Journaled, JournalError  # noqa: E402
from zoo.batch.runner import BatchPlan  # noqa: E402
from zoo.errors import ZooError  # noqa: E402

MODEL = "resnet18"


@pytest.fixture(scope="module")
def ray_local(hosted):
    """One local Ray instance for the module: 2 CPUs, as CI's machine has. Started after the
    test Hub is up, so its workers get the Hub's environment (HF_ENDPOINT, HF_HOME...)."""
    from zoo.batch import ray_executor

    ray = ray_executor.connect(None, num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    """A folder (three images in a class folder, labelled tabby; two loose; one that is not an
    image) and a zip of two more (labelled tabby): seven images, five labelled, one skipped."""
    root = tmp_path_factory.mktemp("ray-images")
    write_images(root / "set" / "tabby", 3, seed=1)
    write_images(root / "set", 2, seed=2, prefix="loose")
    (root / "set" / "broken.png").write_bytes(b"not an image at all")
    zsrc = write_images(root / "zsrc", 2, seed=3, prefix="z")
    with zipfile.ZipFile(root / "more.zip", "w") as zf:
        for p in zsrc:
            zf.write(p, f"tabby/{p.name}")
    return [str(root / "set"), str(root / "more.zip")]


def batch_cli(capsys, *args: str) -> tuple[dict, list[dict]]:
    """``python -m zoo batch ... --json`` in this process: (summary, prediction records)."""
    assert cli.main(["batch", *args, "--json", "--models", MODEL, "--precision", "fp32", "--batch-size", "2"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    return lines[-1]["summary"], lines[:-1]


def journal_lines(path: Path) -> list[dict]:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["journal"] == VERSION and lines[0]["models"] == [MODEL]
    return lines[1:]


def once_each(path: Path, expected: set) -> None:
    """Every (key, model) of ``expected`` in the journal exactly once, and nothing else."""
    keys = [(tuple(x["key"]) if x["key"] else ("skipped", x["file"]), x.get("model")) for x in journal_lines(path)]
    assert len(keys) == len(set(keys)), "a line was written twice"
    assert set(keys) == expected


def same_summary(a: dict, b: dict) -> None:
    """Equal but for time and where it ran."""
    drop = ("seconds", "images_per_s", "device", "batch_size")
    strip = lambda d: {k: v for k, v in d.items() if k not in drop}  # noqa: E731
    assert strip(a) | {"models": None} == strip(b) | {"models": None}
    for x, y in zip(a["models"], b["models"]):
        assert set(x) == set(y)
        for k in x:
            if k in drop:
                continue
            if k == "mean_confidence":
                assert x[k] == pytest.approx(y[k], abs=1e-5)
            else:
                assert x[k] == y[k], k


def by_file(records: list[dict]) -> dict:
    return {(r["file"], r["model"]): r for r in records}


@pytest.fixture(scope="module")
def local_run(images, zoo_file, tmp_path_factory):
    """The reference: a local run's summary, records and journal."""
    out = tmp_path_factory.mktemp("local") / "local.jsonl"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli.main(["batch", *images, "--zoo", str(zoo_file), "--out", str(out), "--json", "--models",
                         MODEL, "--precision", "fp32", "--batch-size", "2"]) == 0
    lines = [json.loads(x) for x in buf.getvalue().splitlines() if x.startswith("{")]
    return lines[-1]["summary"], lines[:-1], out


def expected_keys(local_journal: Path) -> set:
    return {(tuple(x["key"]) if x["key"] else ("skipped", x["file"]), x.get("model"))
            for x in journal_lines(local_journal)}


def test_ray_run_equals_local_run_though_an_actor_dies(ray_local, images, zoo_file, local_run, tmp_path, capsys,
                                                       monkeypatch):
    """Same top-5 per image and model, same summary; and the model's actor dies (its process
    exits) on its second batch: Ray restarts it and resubmits the batch, every result once."""
    summary, records, local_journal = local_run
    assert summary["images"] == 7 and summary["labelled"] == 5 and len(summary["skipped"]) == 1
    marker = tmp_path / "fault-happened"
    monkeypatch.setenv("ZOO_RAY_FAULT", "0:2")
    monkeypatch.setenv("ZOO_RAY_FAULT_MARKER", str(marker))
    out = tmp_path / "ray.jsonl"
    ray_summary, ray_records = batch_cli(capsys, *images, "--zoo", str(zoo_file), "--engine", "ray",
                                         "--out", str(out))
    assert marker.exists(), "the actor was not killed"
    assert ray_summary["device"] == "cpu" and ray_summary["precision"] == "fp32"
    same_summary(summary, ray_summary)
    a, b = by_file(records), by_file(ray_records)
    assert a.keys() == b.keys() and len(a) == 7
    for k in a:
        assert [p["index"] for p in a[k]["predictions"]] == [p["index"] for p in b[k]["predictions"]], k
        np.testing.assert_allclose([p["prob"] for p in a[k]["predictions"]],
                                   [p["prob"] for p in b[k]["predictions"]], atol=1e-5)
    once_each(out, expected_keys(local_journal))
    # The zip's members were read on the driver and classified like files.
    assert {"tabby/z000.png", "tabby/z001.png"} <= {r["file"] for r in ray_records}


def test_a_failed_ray_run_resumes(ray_local, images, zoo_file, zoo, local_run, tmp_path, capsys, monkeypatch):
    """A journal with two results and a line torn by a crash; a Ray run on it whose actor
    dies at once, restarts off, fails (and asks for --resume) without harming the file;
    ``--resume`` on Ray runs only what the file lacks: every line once, the same summary."""
    from zoo.batch.ray_executor import RayExecutor

    summary, records, local_journal = local_run
    out = tmp_path / "ray.jsonl"
    head = local_journal.read_text().splitlines(keepends=True)
    out.write_text("".join(head[:3]) + head[3][:25])  # the header, two results, a torn line
    inp = gather(images)
    ex = RayExecutor([zoo.get(MODEL)], precision="fp32", max_restarts=0)
    targets, _ = resolve_labels(inp.items, ex.labels)
    plan = BatchPlan(tuple(dict.fromkeys(ex.preprocessings)), targets)
    monkeypatch.setenv("ZOO_RAY_FAULT", "0:1")  # the actor dies on its first batch, every time
    journaled = Journaled(ex, out, command="batch", resume=True)
    seen = []
    with pytest.raises(ZooError, match="Ray run failed.*--resume"):
        for event in journaled.run(list(enumerate(inp.items)), plan, keep_k=5, batch_size=2):
            seen.append(event)
    assert journaled.resumed == 2 and len(seen) == 2  # the file's two, rebuilt; nothing new
    assert out.read_text() == "".join(head[:3])  # the torn line is cut, nothing else changed
    monkeypatch.delenv("ZOO_RAY_FAULT")
    ray_summary, ray_records = batch_cli(capsys, *images, "--zoo", str(zoo_file), "--engine", "ray",
                                         "--out", str(out), "--resume")
    same_summary(summary, ray_summary)
    once_each(out, expected_keys(local_journal))
    assert len(ray_records) == 7  # the resumed images are reported too, from the file


def test_resume_refuses_another_runs_journal(images, zoo_file, local_run, tmp_path):
    _, _, local_journal = local_run
    other = tmp_path / "other.jsonl"
    other.write_text(local_journal.read_text().replace('"keep_k": 5', '"keep_k": 7', 1))
    code = cli.main(["batch", *images, "--zoo", str(zoo_file), "--models", MODEL, "--precision", "fp32",
                     "--out", str(other), "--resume"])
    assert code == 2
    assert cli.main(["batch", *images, "--zoo", str(zoo_file), "--resume"]) == 2  # no --out FILE.jsonl
    with pytest.raises(JournalError):
        from zoo.batch.journal import Journal

        Journal.open(other, command="batch", names=[MODEL], labels=["a"], precision="fp32", keep_k=5, resume=True)


def test_local_run_killed_midway_resumes(zoo_file, tmp_path):
    """A local run over 24 more images, one per batch, killed (SIGKILL: no clean-up at all)
    once its journal holds three results; ``--resume`` finishes it: every line once, the
    summary of an uninterrupted run."""
    folder = tmp_path / "many"
    write_images(folder, 24, seed=7)
    out = tmp_path / "run.jsonl"
    args = ["batch", str(folder), "--zoo", str(zoo_file), "--models", MODEL, "--precision", "fp32",
            "--batch-size", "1", "--out", str(out)]
    command = [sys.executable, "-m", "zoo"]
    if NO_NATIVE_BF16:
        command = [sys.executable, "-c", "import runpy, zoo.precision as m; m.cpu_bf16_native = lambda: False; "
                   "runpy.run_module('zoo', run_name='__main__')"]
    proc = subprocess.Popen([*command, *args], cwd=_ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and out.read_text().count("\n") >= 4:  # header + three results
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = len(journal_lines(out))
    assert 3 <= done_before < 24
    resumed = cli_subprocess(*args, "--resume", "--json")
    summary = json.loads(resumed.stdout.splitlines()[-1])["summary"]
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):  # the same run, uninterrupted, in this process
        assert cli.main([*args[:-1], str(tmp_path / "fresh.jsonl"), "--json"]) == 0
    same_summary(json.loads(buf.getvalue().splitlines()[-1])["summary"], summary)
    assert summary["images"] == 24
    once_each(out, expected_keys(tmp_path / "fresh.jsonl"))


def cli_subprocess(*args: str) -> subprocess.CompletedProcess:
    from conftest import run_cli

    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_nothing_imports_ray_without_engine_ray():
    code = ("import sys, zoo.cli, zoo.runtime, zoo.batch, zoo.batch.journal; zoo.cli.build_parser(); "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=_ROOT).returncode == 0


def test_robustness_on_ray_and_resumed(ray_local, images, zoo_file, tmp_path, capsys):
    """``zoo robustness`` (two tabby images, two corruptions at severity 3): Ray gives the local
    run's records and summary; a journal cut to its first three lines (and a torn fourth)
    finishes with --resume on the local engine: every (image, corruption, severity, model) once."""
    folder = Path(images[0]) / "tabby"
    common = ["robustness", str(folder / "img000.png"), str(folder / "img001.png"), "--zoo", str(zoo_file),
              "--models", MODEL, "--precision", "fp32", "--corruptions", "fog", "gaussian_noise",
              "--severities", "3", "--batch-size", "2", "--json"]

    def run(*extra: str) -> tuple[dict, list[dict]]:
        assert cli.main([*common, *extra]) == 0
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
        return lines[-1]["summary"], sorted(lines[:-1], key=lambda r: (r["file"], r["corruption"], r["model"]))

    def strip(summary: dict) -> dict:
        return {k: v for k, v in summary.items() if k not in ("seconds", "device")}

    local_summary, local_records = run("--out", str(tmp_path / "local.jsonl"))
    assert local_summary["images"] == 2 and len(local_records) == 2 * 3  # clean + 2 corruptions, per image
    ray_summary, ray_records = run("--engine", "ray", "--out", str(tmp_path / "ray.jsonl"))
    assert strip(ray_summary) == strip(local_summary)
    assert [[p["index"] for p in r["predictions"]] for r in ray_records] == \
        [[p["index"] for p in r["predictions"]] for r in local_records]
    expected = {(tuple(x["key"]), x["model"]) for x in journal_lines(tmp_path / "local.jsonl")}
    assert len(expected) == 6
    once_each(tmp_path / "ray.jsonl", expected)

    cut = tmp_path / "cut.jsonl"
    head = (tmp_path / "ray.jsonl").read_text().splitlines(keepends=True)
    cut.write_text("".join(head[:4]) + head[4][:30])  # header, three results, a torn line
    resumed_summary, resumed_records = run("--out", str(cut), "--resume")
    assert strip(resumed_summary) == strip(local_summary) and len(resumed_records) == 6
    once_each(cut, expected)
    # Another seed is another run: --resume refuses to mix it in.
    assert cli.main([*common, "--seed", "1", "--out", str(cut), "--resume"]) == 2
    assert "seed" in capsys.readouterr().err


def test_a_ray_run_gives_the_same_decision(ray_local, images, zoo_file, capsys):
    """Issue 33: the decision is computed from the per-image records, so the engine does not change it."""
    from test_decision import same_decision

    def decided(*extra: str) -> dict:
        assert cli.main(["batch", *images, "--zoo", str(zoo_file), "--json", "--models", MODEL, "--precision", "fp32",
                         "--batch-size", "2", "--decide", *extra]) == 0
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
        return lines[-1]["decision"]

    local = decided()
    ray_run = decided("--engine", "ray")
    assert local["n"] == 5 and same_decision(local, ray_run)
    assert ray_run["models"][MODEL]["cost"]["ms_batch1"] > 0 and ray_run["models"][MODEL]["cost"]["peak_mb"] is None
