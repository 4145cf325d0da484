"""The self-check's result (``zoo.selfcheck.SelfCheck``) as the Model zoo tab shows it."""

from __future__ import annotations

from zoo.selfcheck import SelfCheck


def selfcheck_markdown(result: SelfCheck) -> str:
    """A ``zoo.selfcheck.SelfCheck`` as the page shows it: the health line, then a table per model."""
    mark = {"pass": "passes", "warn": "passes (not pinned)", "fail": "**fails**"}
    failed = [m.model for m in result.models if not m.passed]
    n = len(result.models)
    head = (f"Self-check: {n - len(failed)} of {n} models pass; {', '.join(failed)} "
            f"{'fails' if len(failed) == 1 else 'fail'}." if failed else result.health_line())
    lines = [f"**{head}**", "",
             "| model | result | pin | sha256 | photos (accepted class in top-5) |", "|---|---|---|---|---|"]
    for m in result.models:
        photos = "; ".join(f"{p.file}: {'pass' if p.passed else 'FAIL'}, {p.top5[0]['label']} {p.top5[0]['prob']:.2f}"
                           for p in m.photos) or "–"
        lines.append(f"| {m.model} | {mark[m.status]} | {m.pin} | {m.sha} | {photos} |")
    lines.append("")
    lines += [f"* **{m.model}**: {m.diagnosis}" for m in result.models]
    return "\n".join(lines)
