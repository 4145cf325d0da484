"""What the app adds per request: /classify through gradio_client vs the same call on zoo.

    python benchmarks/app_overhead.py [--repeats N] [--model resnet50]

Both paths run the same classify (zoo.features.classify, top_k=5, method="cam") on the same
loaded model; the app path adds upload, queue, rendering of three images and the
download. Loopback only.

Also the app's own work per /classify (rendering the pictures, writing the files, the
labels and text: everything but the model and gradio's fixed cost; target < 60 ms at
ResNet-50), and the bytes of the pictures a visitor downloads, with the on-screen
overlays as JPEG (now) and as PNG (before).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from common import EXAMPLE, local_specs, median_time  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--model", default="resnet50")
    args = ap.parse_args()

    from gradio_client import Client, handle_file

    from ui import build_app
    from ui.views import classify as views
    from zoo.features import classify
    from zoo.registry import Zoo
    from zoo.render import overlay_crop, overlay_image, raw_figure
    from zoo.runtime import Runtime

    explorer = Runtime(Zoo(local_specs(archs=[args.model])))
    demo = build_app(explorer)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False)
        image = handle_file(str(EXAMPLE))

        def direct() -> None:
            classify.result(explorer, classify.Request.create(explorer, EXAMPLE, args.model, 5, "cam"))

        def direct_and_render() -> None:
            r = classify.result(explorer, classify.Request.create(explorer, EXAMPLE, args.model, 5, "cam"))
            overlay_crop(r.run, r.explanation.raw), overlay_image(r.run, r.explanation.raw)
            raw_figure(r.explanation.raw)

        def through_app() -> None:
            client.predict(image, args.model, 5, "cam", "", api_name="/classify")

        # Gradio's own floor on this machine: the same upload to an endpoint that does nothing.
        import gradio as gr

        with gr.Blocks() as floor_demo:
            img, out = gr.Image(type="filepath"), gr.JSON()
            gr.Button().click(lambda _x: {"ok": True}, [img], [out], api_name="noop")
        floor_demo.queue()
        _, floor_url, _ = floor_demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True,
                                            quiet=True)
        floor_client = Client(floor_url, verbose=False)
        floor = median_time(lambda: floor_client.predict(image, api_name="/noop"), args.repeats)[0]
        floor_demo.close()

        no_dl = Client(url, verbose=False, download_files=False)
        a_nodl = median_time(lambda: no_dl.predict(image, args.model, 5, "cam", "", api_name="/classify"),
                             args.repeats)[0]
        d = median_time(direct, args.repeats)[0]
        dr = median_time(direct_and_render, args.repeats)[0]
        a = median_time(through_app, args.repeats)[0]
        print(f"{args.model}, {args.repeats} runs each, median:")
        print(f"  zoo directly (classify + CAM):          {d * 1e3:8.1f} ms")
        print(f"  zoo + rendering the three images:       {dr * 1e3:8.1f} ms")
        print(f"  /classify through gradio_client:        {a * 1e3:8.1f} ms")
        print(f"  the same, client not fetching the PNGs: {a_nodl * 1e3:8.1f} ms")
        print(f"  a no-op gradio endpoint, same upload:   {floor * 1e3:8.1f} ms  (gradio's floor here)")
        import tempfile
        from pathlib import Path

        from ui.common import Context, render_result, save_raw
        from zoo.render import save_png

        ctx = Context.create(explorer, demo)
        result = classify.result(explorer, classify.Request.create(explorer, EXAMPLE, args.model, 5, "cam"))

        def own_work() -> tuple[str, ...]:
            paths = render_result(ctx, result, "jet", 0.5, download=True)
            save_raw(result, Path(paths[0]).parent)
            views.label_dict(result), views.result_markdown(result)
            return paths

        own = median_time(own_work, args.repeats)[0]
        crop, full, fig, _png = own_work()
        shown_now = sum(Path(p).stat().st_size for p in (crop, full, fig))
        with tempfile.TemporaryDirectory() as tmp:
            r = result.explanation.raw
            before = [save_png(overlay_crop(result.run, r), Path(tmp) / "c.png"),
                      save_png(overlay_image(result.run, r), Path(tmp) / "f.png")]
            shown_before = sum(p.stat().st_size for p in before) + Path(fig).stat().st_size
        print(f"  the app's own work per /classify:       {own * 1e3:8.1f} ms  (target < 60 ms)")
        print(f"  pictures shown per /classify: {shown_now / 1e3:.0f} kB now (JPEG overlays), "
              f"{shown_before / 1e3:.0f} kB before (PNG), ratio {shown_now / shown_before:.2f}")
        print(f"  app adds {(a - d) * 1e3:.1f} ms per request (ratio {a / d:.2f}): rendering "
              f"{(dr - d) * 1e3:.1f} ms, transport/queue {(a - dr) * 1e3:.1f} ms, of which gradio's floor "
              f"{floor * 1e3:.1f} ms; beyond the floor: {(a - d - floor) * 1e3:.1f} ms")
    finally:
        demo.close()


if __name__ == "__main__":
    main()
