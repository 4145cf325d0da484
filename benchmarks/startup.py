"""First impression: seconds from `python app.py` to a page that answers, and to the first example result.

    python benchmarks/startup.py [--repeats N] [--device cpu] [--no-compile] [--compile-cache DIR]
    python benchmarks/startup.py --builds resnet18 resnet50 [--after 10]

Each run starts the app as a subprocess on local random-init weights (no network: a
zoo file points the five built-in names at them, HF_HUB_OFFLINE=1) and times, from
the moment it is started:

* ready: the page answers (GET / returns 200);
* example: the first example's result has arrived (POST /gradio_api/call/classify_example
  with example 0, then its SSE stream), asked for as soon as the page answers;
* again: the same example asked for a second time (served from gradio's cache);
* cached: (space only) every example's result is in gradio's cache: the page can answer
  before that, while gradio still computes them;
* preload: (space only) what the app reports for loading the five depths.

* compiled: (compiled only) every preloaded depth runs its compiled batch-1 trunk, what
  Classify and Compare use (the app's log says so for each, zoo.compiled); "all graphs":
  its any-batch graph (Batch, Robustness) too.

With ``--builds DEPTH...`` it measures the first minutes instead (one run): a CPU Space-like
start (SPACE_ID set, the given depths preloaded, ``--compile auto``, an empty compile cache,
examples cached lazily so nothing else loads) while a visitor sends a cheap /classify (the
first depth, CAM) every half second; it prints the time until every graph of every depth
is in use, and the visitor's /classify times during the builds (each graph is built in a
child process) and after them, with their ratio.

Three set-ups, interleaved: "local" (a plain `python app.py`: nothing preloaded, examples
cached at first use), "space" (SPACE_ID set, as on a CPU Space: all five depths
preloaded, every example computed at start), both with ``--compile off``, and "compiled"
(as "space", with ``--compile auto``: the five depths compile in the background while the
page answers, from a compile cache that an untimed first start filled; that cold start's
figures are printed too). The baseline, measured in the same rounds,
is a bare process that does the least any start-up must: import torch and torchvision,
load the five weight files into torchvision's ResNets and classify one image.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import EXAMPLE, local_specs

ROOT = Path(__file__).resolve().parents[1]

BARE = """
import sys, torch, torchvision
from PIL import Image
from safetensors.torch import load_file
tf = torchvision.transforms.Compose([torchvision.transforms.Resize(256), torchvision.transforms.CenterCrop(224),
                                     torchvision.transforms.ToTensor(),
                                     torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
x = tf(Image.open(sys.argv[1]).convert("RGB"))[None]
for arch, path in zip(sys.argv[2::2], sys.argv[3::2]):
    m = torchvision.models.get_model(arch, weights=None)
    m.load_state_dict(load_file(path))
    with torch.inference_mode():
        m.eval()(x)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zoo_file(folder: Path) -> Path:
    """The five built-in names on local weights (path + sha256), so no download is timed."""
    entries = [f'[[model]]\nname = "{s.name}"\narch = "{s.arch.name}"\npath = "{s.path}"\nsha256 = "{s.sha256}"\n'
               f"top1 = 50.0\n" for s in local_specs()]
    path = folder / "bench-zoo.toml"
    path.write_text("\n".join(entries))
    return path


def rest_example(url: str, index: int, timeout: float = 900) -> dict:
    import httpx

    r = httpx.post(f"{url}/gradio_api/call/classify_example", json={"data": [index]}, timeout=60)
    r.raise_for_status()
    event = None
    with httpx.stream("GET", f"{url}/gradio_api/call/classify_example/{r.json()['event_id']}",
                      timeout=timeout) as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                if event == "error":
                    raise RuntimeError(f"example failed: {line}")
                return json.loads(line[5:])
    raise RuntimeError("no result")


def wait_serving(proc: subprocess.Popen, url: str, log: object) -> None:
    """Until the app's page answers (200); an app that exits first is an error naming its log."""
    import httpx

    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited: see {log}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)


def run_app(space: bool, zoo: Path, device: str, work: Path, compiled: bool = False,
            compile_cache: Path | None = None) -> dict[str, float]:
    import httpx

    env = {k: v for k, v in os.environ.items() if k not in ("SPACE_ID", "SYSTEM", "SPACES_ZERO_GPU")}
    examples = Path(tempfile.mkdtemp(dir=work))
    env.update({"ZOO_FILE": str(zoo), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                "GRADIO_EXAMPLES_CACHE": str(examples), "HF_HUB_CACHE": str(work / "hub")})
    if space:
        env.update({"SPACE_ID": "bench/resnet-depth-explorer", "SYSTEM": "spaces"})
    env["ZOO_COMPILE_CACHE"] = str(compile_cache or work / "rde-compile")
    port = free_port()
    log_path = work / f"app-{port}.log"
    log = log_path.open("w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", device,
                             "--compile", "auto" if compiled else "off"], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(proc, url, log.name)
        ready = time.perf_counter() - t0
        rest_example(url, 0)
        example = time.perf_counter() - t0
        t1 = time.perf_counter()
        rest_example(url, 0)
        again = time.perf_counter() - t1
        cached = float("nan")
        while space:  # both example sets (4 + 2 rows) complete in gradio's cache
            rows = sorted(len(list(csv.reader(f.open(encoding="utf-8")))) - 1 for f in examples.glob("*/log.csv"))
            if len(rows) == 2 and rows[0] >= 2 and rows[1] >= 4:
                cached = time.perf_counter() - t0
                break
            time.sleep(0.2)
        done = done_all = float("nan")
        while compiled:  # every preloaded depth reported by the background compile
            text = log_path.read_text()
            if "compiling failed" in text:
                raise RuntimeError(f"compile failed: see {log_path}")
            # each depth's batch-1 graph (what Classify and Compare run) swapped in; then its any-batch one
            if done != done and len(set(re.findall(r"^(resnet\d+): compiled \(batch 1", text, re.M))) >= 5:
                done = time.perf_counter() - t0
            if len(set(re.findall(r"^(resnet\d+): compiled \(batch 1, any batch\)", text, re.M))) >= 5:
                done_all = time.perf_counter() - t0
                break
            if proc.poll() is not None:
                raise RuntimeError(f"app exited: see {log.name}")
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    found = re.search(r"Preloaded .* in ([0-9.]+) s", log_path.read_text())
    preload = float(found.group(1)) if found else float("nan")
    return {"ready": ready, "example": example, "again": again, "cached": cached, "preload": preload,
            "compiled": done, "all graphs": done_all}


def rest_classify(url: str, image: dict, model: str) -> tuple[float, str]:
    """One /classify over raw REST (CAM, top 5): its seconds, and the trunk that answered."""
    import httpx

    t0 = time.perf_counter()
    r = httpx.post(f"{url}/gradio_api/call/classify", json={"data": [image, model, 5, "cam", ""]}, timeout=60)
    r.raise_for_status()
    event = None
    with httpx.stream("GET", f"{url}/gradio_api/call/classify/{r.json()['event_id']}", timeout=600) as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                if event == "error":
                    raise RuntimeError(f"/classify failed: {line}")
                return time.perf_counter() - t0, json.loads(line[5:])[-1]["trunk"]
    raise RuntimeError("no result")


def run_builds(zoo: Path, depths: list[str], device: str, work: Path, after: int) -> dict:
    """A cold Space-like start with ``--compile auto``; a visitor's /classify during the builds and after."""
    import threading

    import httpx

    env = {k: v for k, v in os.environ.items() if k not in ("SPACES_ZERO_GPU", "ZOO_COMPILE")}
    env.update({"ZOO_FILE": str(zoo), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                "HF_HUB_CACHE": str(work / "hub"), "SPACE_ID": "bench/resnet-depth-explorer", "SYSTEM": "spaces",
                "ZOO_CACHE_EXAMPLES": "lazy", "ZOO_COMPILE_CACHE": str(work / "cold-compile")})
    port = free_port()
    log_path = work / f"builds-{port}.log"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--device", device, "--compile", "auto",
                             "--preload", *depths], cwd=ROOT, env=env, stdout=log_path.open("w"),
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    calls: list[tuple[float, float, str]] = []  # (start, seconds, trunk), start from the process start
    stop = threading.Event()
    try:
        wait_serving(proc, url, log_path)
        ready = time.perf_counter() - t0
        up = httpx.post(f"{url}/gradio_api/upload", files=[("files", (EXAMPLE.name, EXAMPLE.read_bytes()))], timeout=60)
        image = {"path": up.json()[0], "orig_name": EXAMPLE.name, "meta": {"_type": "gradio.FileData"}}

        def visitor() -> None:
            while not stop.is_set():
                start = time.perf_counter() - t0
                seconds, trunk = rest_classify(url, image, depths[0])
                calls.append((start, seconds, trunk))
                time.sleep(0.5)

        thread = threading.Thread(target=visitor, daemon=True)
        thread.start()
        done = float("nan")
        while True:
            text = log_path.read_text()
            if "compiling failed" in text or " failed (" in text:
                raise RuntimeError(f"a build failed: see {log_path}")
            if len(set(re.findall(r"^(resnet\d+): compiled \(batch 1, any batch\)", text, re.M))) >= len(depths):
                done = time.perf_counter() - t0
                break
            if proc.poll() is not None:
                raise RuntimeError(f"app exited: see {log_path}")
            time.sleep(0.2)
        while sum(1 for c in calls if c[0] > done) < after:
            time.sleep(0.2)
        stop.set()
        thread.join(timeout=600)
    finally:
        stop.set()
        proc.terminate()
        proc.wait(timeout=60)
    during = [s for start, s, _ in calls if start + s < done]
    later = [s for start, s, trunk in calls if start > done]
    return {"ready": ready, "all graphs": done, "during": during, "after": later,
            "trunks after": sorted({trunk for start, _, trunk in calls if start > done})}


def report_builds(r: dict, depths: list[str], device: str) -> None:
    import platform

    import torch

    d, a = statistics.median(r["during"]), statistics.median(r["after"])
    load = os.getloadavg()[2] if hasattr(os, "getloadavg") else float("nan")
    print(f"device {device}, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores (load average over 15 min at the end: {load:.1f}); depths {', '.join(depths)}, "
          "compile cache empty, Space-like start")
    print(f"page answers: {r['ready']:.1f} s; every graph (batch 1 and any batch) of every depth in use: "
          f"{r['all graphs']:.1f} s after the process started")
    p90 = statistics.quantiles(r["during"], n=10)[-1] if len(r["during"]) > 1 else d
    print(f"visitor's /classify ({depths[0]}, CAM) while graphs build: median {d * 1000:.0f} ms, 90th percentile "
          f"{p90 * 1000:.0f} ms, max {max(r['during']) * 1000:.0f} ms over {len(r['during'])} calls")
    print(f"after every graph is in use ({', '.join(r['trunks after'])} trunk): median {a * 1000:.0f} ms over "
          f"{len(r['after'])} calls")
    print(f"during / after = {d / a:.2f} (target <= 2)")


def run_bare() -> float:
    args = [str(EXAMPLE)]
    for s in local_specs():
        args += [s.arch.name, s.path]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", BARE, *args], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    ap.add_argument("--no-compile", action="store_true", help="leave out the compiled set-up")
    ap.add_argument("--compile-cache", type=Path, default=None, metavar="DIR",
                    help="compile cache to start from (one that benchmarks/compare.py filled: ~/.cache/rde-compile); "
                         "then no cold start is run (default: a new one, filled by an untimed cold start)")
    ap.add_argument("--builds", nargs="+", metavar="DEPTH",
                    help="measure the first minutes of a cold start with these depths instead (see above)")
    ap.add_argument("--after", type=int, default=30, help="with --builds: /classify calls timed after the builds")
    args = ap.parse_args()
    local_specs()  # make the weight files once, outside the timings
    if args.builds:
        with tempfile.TemporaryDirectory(prefix="rde-startup-") as tmp:
            work = Path(tmp)
            report_builds(run_builds(zoo_file(work), args.builds, args.device, work, args.after), args.builds,
                          args.device)
        return
    with tempfile.TemporaryDirectory(prefix="rde-startup-") as tmp:
        work = Path(tmp)
        zoo = zoo_file(work)
        bare: list[float] = []
        runs: dict[str, list[dict[str, float]]] = {"local": [], "space": []}
        cold = None
        if not args.no_compile:
            runs["compiled"] = []
            if args.compile_cache is None:
                cold = run_app(True, zoo, args.device, work, compiled=True)  # fills the compile cache
        for _ in range(args.repeats):  # interleaved, so load on the machine hits every path alike
            bare.append(run_bare())
            for name in runs:
                runs[name].append(run_app(name != "local", zoo, args.device, work, compiled=name == "compiled",
                                          compile_cache=args.compile_cache))
    b = statistics.median(bare)
    print(f"device {args.device}, {args.repeats} interleaved round(s), medians in seconds from the process start")
    print(f"bare baseline (import torch, load five ResNets, classify one image): {b:.1f} s")
    print(f"{'set-up':<9}{'ready':>8}{'example':>10}{'again':>8}{'cached':>8}{'preload':>9}{'compiled':>10}"
          f"{'ready/bare':>12}{'example/bare':>14}")
    meds = {}
    for name, rs in [*runs.items(), *([("cold", [cold])] if cold else [])]:
        med = meds[name] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"{name:<9}{med['ready']:8.1f}{med['example']:10.1f}{med['again']:8.2f}{med['cached']:8.1f}"
              f"{med['preload']:9.1f}{med['compiled']:10.1f}{med['ready'] / b:12.2f}{med['example'] / b:14.2f}")
    print("local: nothing preloaded, the example is computed at first use (loads resnet50).")
    print("space: SPACE_ID set; all five depths preloaded, then every example computed at start; the page answers\n"
          "       while gradio is still computing them ('cached': when it is done).")
    if not args.no_compile:
        c, e = meds["compiled"], meds["space"]
        print("compiled: as space, --compile auto, compile cache warm"
              + ("; cold: its first start, cache empty (one run)." if cold else f" ({args.compile_cache})."))
        print(f"warm start, every depth compiled: {c['compiled']:.1f} s = eager start (space, page answers) "
              f"{e['ready']:.1f} s + {c['compiled'] - e['ready']:.1f} s (target <= 15 s); all examples cached "
              f"{c['cached'] - e['cached']:+.1f} s against eager; every graph (any batch too) "
              f"{c['all graphs']:.1f} s")


if __name__ == "__main__":
    main()
