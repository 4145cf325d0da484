"""What one visitor may ask of a shared server: a cost ceiling per request, fair turns, an upload budget.

``Gate`` admits each request of the app before its work starts:

* **Ceiling.** A request whose estimate (``zoo.features.*.estimate``, the same
  figure the page shows under its Run button) is over ``max_request_seconds`` is refused
  up front, with a message naming the limit and what to do. One that is admitted gets a
  deadline of ``DEADLINE_FACTOR`` times the ceiling: a run still going then is stopped
  through its cancellation token (``zoo.cancel``), like a Stop.
* **Two lanes.** Requests estimated at ``quick_seconds`` or less (a classification with
  CAM or Grad-CAM) run in the quick lane, everything else in the long lane; each lane has
  its own slots, so a cheap classify never waits behind a batch. An estimate can be wrong
  (a loaded machine, a method dearer than its table says): a quick-lane run still going
  after ``OVERRUN_FACTOR`` times its estimate (and at least ``quick_seconds``) is moved to
  the long lane. It gives its quick slot back at once, counts as long for its visitor,
  and takes the visitor's turn and a long slot as soon as they are free (it keeps running
  meanwhile: work cannot be paused, only stopped).
* **Fairness per visitor.** A visitor has at most one long request running and
  ``max_queued`` more waiting; beyond that a long request is refused at once. Quick
  requests: at most ``max_quick`` in flight per visitor. One client cannot fill the
  server's queue.

``UploadBudget`` bounds the bytes one visitor uploads per time window; ``InFlight``
bounds the MCP tool calls one visitor (and everyone) has in flight, refusing the excess
at once, before a call takes any thread.

Everything here runs on the server's event loop (asyncio); it holds counters, never
requests' data. A "visitor" is a key the front end derives from the connection (see
``ui.guard.visitor_key``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

from .errors import ZooError

# An admitted run may take this many times the ceiling before it is stopped: estimates
# are within about 1.5x of the measured time once a model has run here.
DEADLINE_FACTOR = 1.5
# Before any forward has been timed on this device, an estimate has forward passes but no
# seconds; the gate then assumes this much per forward pass: ResNet-152 on a 2-core CPU,
# the dearest built-in on the slowest machine this app is meant for (benchmarks/compare.py).
ASSUMED_FORWARD_S = 0.3
# A quick-lane run this many times over its estimate is no quick run: it moves to the long lane.
OVERRUN_FACTOR = 3.0


class LimitError(ZooError):
    """A request over one of the server's limits; the message names the limit and what to do."""


@dataclass(frozen=True)
class Limits:
    """The server's limits; ``None`` switches one off. ``Limits()`` is a local app's: no ceiling."""

    max_request_seconds: float | None = None  # estimated seconds one request may cost
    quick_seconds: float = 3.0  # at most this (estimated) runs in the quick lane
    long_slots: int = 2  # long requests running at once (app.py --concurrency)
    quick_slots: int = 2  # quick requests running at once
    max_queued: int = 2  # long requests one visitor may have waiting behind its running one
    max_quick: int = 4  # quick requests one visitor may have in flight
    upload_bytes: int | None = None  # bytes one visitor may upload per window
    upload_window_s: float = 600.0
    # MCP tool calls in flight (running or waiting for the gate): each holds server threads while
    # it waits for its loopback call, so they are bounded per visitor and in all, whatever the ceiling.
    max_tool_calls: int = 4
    tool_calls_total: int = 16

    @classmethod
    def public(cls, concurrency: int = 2) -> Limits:
        """The defaults of a public deployment (a Space): a one-minute ceiling, 100 MB of uploads per 10 minutes."""
        return cls(max_request_seconds=60.0, long_slots=concurrency, upload_bytes=100 * 1024 * 1024)

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def seconds_of(forwards: int, seconds: float | None) -> tuple[float, bool]:
    """(estimated seconds, measured?) of an estimate: measured here, or assumed from its forward passes."""
    if seconds is not None:
        return seconds, True
    return forwards * ASSUMED_FORWARD_S, False


def duration_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


@dataclass
class _Visitor:
    long: int = 0  # long requests in flight (running or waiting)
    quick: int = 0
    turn: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))  # one long run at a time

    def count(self, lane: str, n: int) -> None:
        if lane == "long":
            self.long += n
        else:
            self.quick += n


@dataclass(frozen=True)
class Admission:
    """Where an admitted request runs and until when."""

    lane: str  # "quick" or "long"
    seconds: float  # its estimate
    deadline_s: float | None  # stop it after this long (None: no ceiling)


class Gate:
    """Admits requests under ``Limits``; one per server, used from its event loop only."""

    def __init__(self, limits: Limits | None = None, trim: Callable[[], object] | None = None):
        self.limits = limits or Limits()
        # Called in a worker thread when the last long run ends (``zoo.memory.trim``: freed memory
        # goes back to the system); None: ``zoo.memory.trim``.
        self._trim = trim or _memory_trim
        self._trimming: asyncio.Future | None = None
        self._lanes: dict[str, asyncio.Semaphore] = {}
        self._visitors: dict[str, _Visitor] = {}
        self.running = {"quick": 0, "long": 0}  # for tests, and the waiting message
        self.moved = 0  # quick runs moved to the long lane (for tests and the log)

    def _lane(self, name: str) -> asyncio.Semaphore:
        # Made on first use, inside the running loop (a Semaphore binds to its loop).
        if name not in self._lanes:
            self._lanes[name] = asyncio.Semaphore(self.limits.quick_slots if name == "quick"
                                                  else self.limits.long_slots)
        return self._lanes[name]

    def check(self, forwards: int, seconds: float | None, what: str = "This run") -> Admission:
        """Refuse an estimate over the ceiling (``LimitError``); else say where it runs."""
        est, measured = seconds_of(forwards, seconds)
        ceiling = self.limits.max_request_seconds
        if ceiling is not None and est > ceiling:
            basis = "measured on this server" if measured else "assumed before any model has run here"
            raise LimitError(
                f"{what} would take about {duration_text(est)} here ({forwards} forward passes, {basis}); this "
                f"server allows {duration_text(ceiling)} per request. Choose a cheaper setting (fewer models, a "
                "cheaper method, fewer images), or run the app on your own machine, where there is no such "
                "limit: python app.py (or the command line, python -m zoo ...).")
        lane = "quick" if est <= self.limits.quick_seconds else "long"
        return Admission(lane, est, None if ceiling is None else ceiling * DEADLINE_FACTOR)

    def overrun_after(self, admission: Admission) -> float | None:
        """Seconds after which a quick-lane run is moved to the long lane (None: a long run)."""
        if admission.lane != "quick":
            return None
        return max(self.limits.quick_seconds, OVERRUN_FACTOR * admission.seconds)

    @contextlib.asynccontextmanager
    async def admit(self, visitor: str, admission: Admission,
                    waiting: Callable[[str], None] | None = None) -> AsyncIterator[Admission]:
        """Hold a slot of the request's lane (and, for long work, the visitor's turn) for the block.

        Raises ``LimitError`` at once when the visitor already has too many requests in
        flight. ``waiting(message)`` is told while the request waits for its turn. A quick
        run that overruns (``overrun_after``) is moved to the long lane while the block runs.
        """
        v = self._visitors.setdefault(visitor, _Visitor())
        lim = self.limits
        if admission.lane == "long" and v.long >= 1 + lim.max_queued:
            raise LimitError(f"You already have {v.long} long runs on this server (one running, the rest waiting); "
                             "wait for them to finish, or press Stop, then try again.")
        if admission.lane == "quick" and v.quick >= lim.max_quick:
            raise LimitError(f"You already have {v.quick} requests running on this server; wait for them to "
                             "finish, then try again.")
        run = _Run(admission.lane)
        v.count(run.lane, +1)
        mover: asyncio.Task | None = None
        try:
            if run.lane == "long":
                if v.turn.locked() and waiting:
                    waiting("Waiting for your previous run to finish")
                await v.turn.acquire()
                run.turn = True
            if self._lane(run.lane).locked() and waiting:
                waiting(f"Waiting for a free slot ({self.running[run.lane]} {run.lane} runs ahead on this server)")
            await self._take(run, run.lane)
            after = self.overrun_after(admission)
            if after is not None:
                mover = asyncio.ensure_future(self._move_later(v, run, after))
            yield admission
        finally:
            if mover is not None:
                # Not awaited: a second Stop must reach this request, not the mover. The mover
                # is parked at an await, so ``run`` says what it holds; a wake-up it had not
                # taken yet goes back to the semaphore (asyncio's acquire handles that).
                mover.cancel()
            if run.slot is not None:
                self._give(run)
            if run.turn:
                v.turn.release()
            v.count(run.lane, -1)
            if v.long == 0 and v.quick == 0:
                self._visitors.pop(visitor, None)
            if run.lane == "long" and self.running["long"] == 0:
                self._trim_soon()

    def _trim_soon(self) -> None:
        """Give freed memory back after heavy work, off the event loop, one trim at a time."""
        if self._trimming is None or self._trimming.done():
            self._trimming = asyncio.get_running_loop().run_in_executor(None, self._trim)

    async def _take(self, run: _Run, lane: str) -> None:
        await self._lane(lane).acquire()
        run.slot = lane
        self.running[lane] += 1

    def _give(self, run: _Run) -> None:
        assert run.slot is not None
        self.running[run.slot] -= 1
        self._lane(run.slot).release()
        run.slot = None

    async def _move_later(self, v: _Visitor, run: _Run, after: float) -> None:
        """After ``after`` seconds, move a quick run to the long lane (see the module's docstring)."""
        await asyncio.sleep(after)
        self._give(run)  # the quick slot goes back to quick work now
        v.count("quick", -1)
        v.count("long", +1)
        run.lane = "long"
        self.moved += 1
        await v.turn.acquire()  # the visitor's next long run waits for this one
        run.turn = True
        await self._take(run, "long")


@dataclass
class _Run:
    """One admitted request: the lane it counts in, the slot it holds, whether it holds its visitor's turn."""

    lane: str
    slot: str | None = None
    turn: bool = False


def _memory_trim() -> object:
    from .memory import trim

    return trim()


class UploadBudget:
    """Bytes each visitor uploaded in the last window; thread-safe enough for one event loop."""

    def __init__(self, limit_bytes: int | None, window_s: float):
        self.limit = limit_bytes
        self.window = window_s
        self._sent: dict[str, deque[tuple[float, int]]] = {}

    def used(self, visitor: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        q = self._sent.get(visitor)
        if q is None:
            return 0
        while q and q[0][0] < now - self.window:
            q.popleft()
        if not q:
            self._sent.pop(visitor, None)
            return 0
        return sum(n for _, n in q)

    def take(self, visitor: str, nbytes: int) -> None:
        """Count ``nbytes`` against ``visitor``; ``LimitError`` once the window's budget is spent."""
        if self.limit is None:
            return
        now = time.monotonic()
        used = self.used(visitor, now)
        if used + nbytes > self.limit:
            raise LimitError(f"Upload limit reached: this server takes {self.limit / 2**20:.0f} MB of uploads per "
                             f"visitor every {self.window / 60:.0f} minutes. Wait a few minutes, or run the app on "
                             "your own machine (python app.py), which has no such limit.")
        self._sent.setdefault(visitor, deque()).append((now, nbytes))


class InFlight:
    """Calls in flight per visitor and in all; beyond either bound a call is refused at once (``LimitError``).

    For MCP tool calls: gradio's MCP server holds worker threads for each call while it waits
    for its loopback request, so calls must be counted before they start, not where the
    gate admits their loopback request (by then the threads are taken). Used from the
    server's event loop only.
    """

    def __init__(self, per_visitor: int, total: int):
        self.per_visitor = per_visitor
        self.total = total
        self._calls: dict[str, int] = {}

    @property
    def now(self) -> int:
        return sum(self._calls.values())

    def take(self, visitor: str) -> None:
        """Count one more call of ``visitor``, or raise ``LimitError`` (nothing counted) beyond a bound."""
        mine = self._calls.get(visitor, 0)
        if mine >= self.per_visitor:
            raise LimitError(f"You already have {mine} tool calls running on this server (at most {self.per_visitor} "
                             "at once); wait for them to finish, then try again.")
        if self.now >= self.total:
            raise LimitError(f"This server is answering {self.total} tool calls already; try again in a moment.")
        self._calls[visitor] = mine + 1

    def give(self, visitor: str) -> None:
        """One call of ``visitor`` has ended."""
        left = self._calls.get(visitor, 1) - 1
        if left:
            self._calls[visitor] = left
        else:
            self._calls.pop(visitor, None)

    @contextlib.contextmanager
    def hold(self, visitor: str):
        self.take(visitor)
        try:
            yield
        finally:
            self.give(visitor)
