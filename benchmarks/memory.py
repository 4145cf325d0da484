"""What the server's memory does after heavy requests, and what ``zoo.memory.trim`` gives back.

Preloads the five depths (as a Space does), runs heavy requests in five worker threads (as
the app's gate does: FullGrad on ResNet-152 and -101, a landscape of ResNet-50 and of
ResNet-152, compare on five depths, Integrated Gradients), then prints the resident memory
(RSS) after preloading, after the requests (every result dropped, the garbage collected),
and after one ``malloc_trim(0)``, with the ratios to the preloaded baseline.

    python benchmarks/memory.py
"""

from __future__ import annotations

import gc
import time
from concurrent.futures import ThreadPoolExecutor

from common import EXAMPLE, local_specs

from zoo.features import classify, compare, landscape
from zoo.memory import trim
from zoo.registry import Zoo
from zoo.runtime import Runtime


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def main() -> None:
    explorer = Runtime(Zoo(local_specs()), "cpu", precision="fp32", compile="off")
    for spec in explorer.zoo:
        explorer.cache.get(spec)
    base = rss_mb()
    img = str(EXAMPLE)
    def explained(model: str, method: str) -> classify.Result:
        return classify.result(explorer, classify.Request.create(explorer, img, model, method=method))

    jobs = [lambda: explained("resnet152", "fullgrad"),
            lambda: explained("resnet101", "fullgrad"),
            lambda: list(landscape.run(explorer, landscape.Request.create(explorer, img, ["resnet50"], grid=3, dims=2))),
            lambda: compare.result(explorer, compare.Request.create(explorer, img, method="gradcam")),
            lambda: explained("resnet50", "integrated-gradients"),
            lambda: list(landscape.run(explorer, landscape.Request.create(explorer, img, ["resnet152"], grid=3,
                                                                           dims=1)))]
    with ThreadPoolExecutor(5) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()
    gc.collect()
    heavy = rss_mb()
    t0 = time.perf_counter()
    trimmed = trim()
    took = time.perf_counter() - t0
    after = rss_mb()
    print(f"preloaded (baseline)        {base:7.0f} MB  1.00x")
    print(f"after the heavy requests    {heavy:7.0f} MB  {heavy / base:.2f}x")
    print(f"after malloc_trim(0)        {after:7.0f} MB  {after / base:.2f}x  "
          f"({'%.2f s' % took if trimmed else 'no glibc here: nothing trimmed'})")


if __name__ == "__main__":
    main()
