"""ResNet Depth Explorer: `python app.py [--host H] [--port P] [--share] [--device D] [--precision P] [--compile auto|on|off] [--preload ...] [--zoo FILE] [--max-batch-images N] [--max-request-seconds S] [--max-upload-mb MB] [--trust-proxy] [--mcp]`."""

import argparse
import dataclasses
import logging
import os
import signal
import sys
import time

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="public gradio.live link (off by default)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16", "fp16"],
                   help="trunk precision (default: $ZOO_PRECISION or auto)")
    p.add_argument("--compile", default=None, choices=["auto", "on", "off"],
                   help="compiled trunk for classifying (default: $ZOO_COMPILE or auto): built by a child process "
                        "after start and after each model's first load, eager until then; auto falls back to eager "
                        "where compiling is not possible (no C++ compiler, ZeroGPU, MPS), on is then an error")
    p.add_argument("--preload", nargs="*", default=os.environ.get("ZOO_PRELOAD", "").split(), metavar="NAME",
                   help="models to load at start, 'all', or 'none' (default: $ZOO_PRELOAD, else none; on a Space "
                        "every built-in)")
    p.add_argument("--zoo", metavar="FILE", help="TOML file with extra [[model]] entries (default: $ZOO_FILE)")
    p.add_argument("--concurrency", type=int, default=2, help="requests run at once (default 2)")
    p.add_argument("--max-batch-images", type=int, default=500, metavar="N",
                   help="images per request in the Batch tab and /batch (default 500)")
    public = "default: none; on a Space"
    p.add_argument("--max-request-seconds", type=float, default=None, metavar="S",
                   help=f"refuse requests estimated over S seconds, stop runs past 1.5 x S ({public} 60; 0: none)")
    p.add_argument("--max-upload-mb", type=float, default=None, metavar="MB",
                   help=f"uploads per visitor per 10 minutes ({public} 100; 0: none)")
    p.add_argument("--trust-proxy", action="store_true", default=None,
                   help="take visitors' addresses from X-Forwarded-For (on by default on a Space, whose proxy "
                        "sets it)")
    p.add_argument("--mcp", action="store_true", default=None,
                   help="also serve the endpoints as MCP tools at /gradio_api/mcp (default: $RDE_MCP)")
    return p


def limits_from(args: argparse.Namespace, public: bool):
    """The server's ``zoo.limits.Limits``: a public deployment's defaults on a Space, none locally;
    each option overrides (0 switches a limit off)."""
    from zoo.limits import Limits

    base = Limits.public(args.concurrency) if public else Limits(long_slots=args.concurrency)
    changes = {}
    if args.max_request_seconds is not None:
        changes["max_request_seconds"] = args.max_request_seconds or None
    if args.max_upload_mb is not None:
        changes["upload_bytes"] = int(args.max_upload_mb * 1024 * 1024) or None
    return dataclasses.replace(base, **changes)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)

    from ui import build_app, launch_options
    from ui.common import remove_uploads
    from ui.mcp import enabled as mcp_enabled
    from ui.spaces import activate, compile_forbidden, on_space, preload_names, zero_gpu
    from zoo.commands.common import print_progress
    from zoo.errors import ZooError
    from zoo.features.selfcheck import selfcheck
    from zoo.registry import Zoo
    from zoo.runtime import Runtime

    activate()  # ZeroGPU: `import spaces` first; it emulates CUDA, so the preloaded models land on `cuda`
    t0 = time.perf_counter()
    try:
        zoo = Zoo.load(args.zoo)
        names = preload_names(args.preload, zoo.names, [s.name for s in zoo.builtin_depths])
        # Preloaded models must all stay in the cache: on ZeroGPU nothing loaded later persists.
        cache_size = max(len(names), int(os.environ.get("ZOO_MODEL_CACHE", "5")))
        rt = Runtime(zoo, args.device, cache_size=cache_size, precision=args.precision,
                            compile=args.compile, compile_forbidden=compile_forbidden())
        for name in names:
            rt.cache.get(zoo.get(name), print_progress)
    except ZooError as e:
        sys.exit(f"error: {e}")
    # Models loaded from now on answer in fp32 while auto measures their precision (zoo.autotune).
    rt.cache.tune_in_background()
    if names:
        print(f"Preloaded {', '.join(names)} on {rt.device} in {time.perf_counter() - t0:.1f} s", flush=True)
    # On a Space, the preloaded weights are checked once (zoo.selfcheck): the header says whether they give real
    # answers. Not on ZeroGPU, where no model may run outside a GPU call (the Model zoo tab runs it there).
    health = None
    if names and on_space() and not zero_gpu():
        try:
            health = selfcheck(rt, names, print_progress).health_line()
        except Exception as e:  # noqa: BLE001 - a bug in the check must not keep the Space from starting
            health = f"Self-check: could not run ({type(e).__name__}); see the server's log."
            logging.getLogger("rde").exception("The self-check failed")
        print(health, flush=True)
    limits = limits_from(args, on_space())
    trust_proxy = on_space() if args.trust_proxy is None else args.trust_proxy
    demo = build_app(rt, max_batch_images=args.max_batch_images, limits=limits, trust_proxy=trust_proxy,
                     health=health)
    # SIGTERM (what Spaces, Docker and systemd send) ends the process without cleanup by
    # default; as an interrupt, gradio closes the server and the output folder is removed.
    signal.signal(signal.SIGTERM, _interrupt)
    # Model work is admitted by the app's own gate (ui/guard.py: lanes, turns per visitor),
    # so gradio's queue only bounds how many requests may wait at all.
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    # Never blocks a visitor: the eager models answer until each compiled trunk is swapped in, and each graph
    # is built by a child process (zoo.compiling): no tracing or compiling in this one.
    rt.compile_in_background(
        lambda m: print(f"{m.spec.name}: {m.compile_note} ({time.perf_counter() - t0:.1f} s after start)", flush=True))
    if rt.compile_plan.note:
        print(f"Compile: {rt.compile_plan.note}", flush=True)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, mcp_server=mcp_enabled(args.mcp),
                    **launch_options(demo))
    finally:
        remove_uploads(demo)  # what visitors sent, also when the server's own shutdown was cut short


if __name__ == "__main__":
    main()
