"""The About tab's text read from the repository: the example photos' credits."""

from __future__ import annotations

from ..common import EXAMPLES


def credits_markdown() -> str:
    """examples/CREDITS.md, read when the page is built (its own heading dropped: the accordion has one)."""
    lines = (EXAMPLES / "CREDITS.md").read_text(encoding="utf-8").splitlines()
    return "\n".join(ln for ln in lines if not ln.startswith("# ")).strip()
