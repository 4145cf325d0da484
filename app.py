"""ResNet Depth Explorer: `python app.py [--host H] [--port P] [--share] [--device D] [--preload ...] [--zoo FILE]`."""

import argparse
import os
import signal
import sys

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="public gradio.live link (off by default)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--preload", nargs="*", default=[], metavar="NAME", help="models to load at start, or 'all'")
    p.add_argument("--zoo", metavar="FILE", help="TOML file with extra [[model]] entries (default: $ZOO_FILE)")
    p.add_argument("--concurrency", type=int, default=2, help="requests run at once (default 2)")
    return p


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)

    from ui import MAX_FILE_SIZE, build_app
    from zoo.cli import print_progress
    from zoo.errors import ZooError
    from zoo.registry import Zoo
    from zoo.service import Explorer

    try:
        explorer = Explorer(Zoo.load(args.zoo), args.device)
        names = explorer.zoo.names if args.preload == ["all"] else args.preload
        for name in names:
            explorer.cache.get(explorer.zoo.get(name), print_progress)
    except ZooError as e:
        sys.exit(f"error: {e}")
    demo = build_app(explorer)
    # SIGTERM (what Spaces, Docker and systemd send) ends the process without cleanup by
    # default; as an interrupt, gradio closes the server and the output folder is removed.
    signal.signal(signal.SIGTERM, _interrupt)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE,
                show_error=True)


if __name__ == "__main__":
    main()
