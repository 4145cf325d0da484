"""One module per capability; every front end (tab, CLI command, HTTP endpoint, MCP tool) is a
thin adapter over it.

Each feature module exposes the same four things:

- ``Request``: a frozen dataclass of what the feature needs, built with
  ``Request.create(rt, **raw)``, which validates raw values (a form's, argparse's, a REST
  payload's) through ``zoo.params`` and raises a ``ZooError`` saying what to send instead.
- ``estimate(rt, req) -> zoo.costs.Estimate``: through the one cost model (``rt.costs``): the
  figure the page shows, the figure the gate's ceilings check, and ZeroGPU's duration.
- ``run(rt, req, progress=None) -> Iterator``: the work, as a generator of the feature's
  progress events ending with its result; it checks ``zoo.cancel`` between steps, so a Stop
  (or a consumer that stops iterating) ends it. ``result(rt, req, progress)`` runs it to the end.
- the result's ``to_json()``: the one JSON of the feature, which the CLI's ``--json``, the
  endpoint's details and the MCP tool's text all print.

``rt`` is the process's ``zoo.runtime.Runtime`` (zoo, model cache, device, cost model).
"""

from __future__ import annotations

from typing import Any, Iterable

# The capabilities, in the order the page shows them (each is ``zoo.features.<name>``).
FEATURES = ("classify", "compare", "rank", "sanity", "analyze", "landscape", "robustness", "batch",
            "zoo_table", "selfcheck")


def last(events: Iterable[Any]) -> Any:
    """Run a feature's event stream to its end and return the last event (its result)."""
    result = None
    for result in events:
        pass
    if result is None:
        raise RuntimeError("the feature's run yielded nothing")  # a bug, not a user error
    return result
