"""What an error surface (zoo.landscape) costs per grid point, per depth, and what the defaults cost.

    python benchmarks/landscape.py [--grid 3] [--images 1] [--device auto] [--archs resnet18 resnet152]

For each depth: one grid point = set every conv/fc weight to theta + a*delta + b*eta (in place,
on the private fp32 copy) + one fp32 forward of the images; measured as the median over a
3 x 3 grid (``--grid``) run through ``zoo.landscape.stream``, next to a bare torchvision fp32
forward (BatchNorm unfolded, NCHW, batch = images, inference mode) timed between the grid
points, so both see the same load on a shared machine. Then the whole run for all five depths at several grid sizes,
projected from these medians plus each depth's measured setup (weights, directions, centre
pass): which defaults stay within about a minute here.

Random-init weights, subnormals flushed (see common.py): timings, not values.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from common import EXAMPLE, local_specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", type=int, default=3, help="odd points per axis measured (default 3: 9 points)")
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ap.add_argument("--archs", nargs="*", default=None, help="default: all five depths")
    args = ap.parse_args()

    import torch
    import torchvision
    from safetensors.torch import load_file

    from zoo import landscape as zl
    from zoo.images import load_image
    from zoo.models import resolve_device

    device = resolve_device(args.device)
    specs = local_specs(archs=args.archs)
    image = load_image(EXAMPLE)
    images = zl.Images([f"chelsea-{i}" for i in range(args.images)], [image] * args.images, [None] * args.images)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    print(f"device: {device}  torch {torch.__version__}  threads {torch.get_num_threads()}  images {args.images}  "
          f"measured grid {args.grid}x{args.grid}  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'model':<11}{'bare fwd ms':>12}{'point ms':>10}{'x bare':>8}{'setup s':>9}{'run s':>8}")
    rows = []
    for spec in specs:
        bare = torchvision.models.get_model(spec.arch.name, weights=None)
        bare.load_state_dict(load_file(spec.path))
        bare = bare.eval().to(device)
        pre = spec.preprocessing
        x = torch.cat([zl.to_tensor(zl.model_crop(image.image, pre), pre)] * args.images).to(device)
        fwd: list[float] = []

        def bare_forward() -> None:
            sync()
            t0 = time.perf_counter()
            with torch.inference_mode():
                bare(x)
            sync()
            fwd.append(time.perf_counter() - t0)

        bare_forward()  # warm-up
        fwd.clear()
        t0 = time.perf_counter()
        bare_s = 0.0
        # The bare forwards run between the grid points (at each Step), so both see the same machine load.
        for event in zl.stream(spec, images, device=device, grid=args.grid, dims=2):
            if isinstance(event, zl.Step):
                bare_forward()
                bare_s += fwd[-1]
            else:
                result = event
        run_s = time.perf_counter() - t0 - bare_s
        del bare
        point = result.point_seconds
        setup = run_s - result.points * point  # weights, directions, centre pass (and the median's slack)
        bare_ms = statistics.median(fwd) * 1e3
        rows.append((spec.name, point, setup))
        print(f"{spec.name:<11}{bare_ms:12.0f}{point * 1e3:10.0f}{point * 1e3 / bare_ms:8.2f}{setup:9.1f}{run_s:8.1f}")
    print("\nProjected run for the depths above (setup + points x median point time):")
    for dims, grid in ((1, 11), (1, 21), (2, 5), (2, 7), (2, 9), (2, 11)):
        n = zl.grid_points(grid, dims)
        total = sum(setup + n * point for _, point, setup in rows)
        print(f"  {dims}-D, grid {grid:>2} ({n:>3} points per depth): {total:6.0f} s")
    print(f"(load average now {os.getloadavg()[0]:.1f}: on a shared machine the times scale with it, the ratios less)")


if __name__ == "__main__":
    main()
