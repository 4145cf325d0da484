"""One cancellation token per request, checked by every long computation.

A front end makes a ``Token`` for each request and runs the work inside
``running(token)``. The work never receives the token as an argument: the module
walker (``zoo.models.block_forward``), the hooks an explanation puts on the model
(``zoo.explain``) and every loop between steps call ``check()``, which reads the token
of the current context. So a Stop, a closed page or a passed deadline ends a run within
about one residual block, whatever library (Captum, TorchCAM, ...) is driving the model.

Without a token (the CLI, tests, a script) ``check()`` costs one context-variable read
and never raises; Ctrl-C stops the CLI as usual.

``contextvars`` rather than a thread-local: gradio runs each step of a handler in a
worker thread with a copy of the caller's context, so the token follows the request
into whichever thread runs it, and two requests on one thread never see each other's.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from typing import Iterator

from .errors import ZooError

REASONS = {
    "stopped": "Stopped.",
    "closed": "Stopped: the page or the connection was closed.",
    "deadline": "Stopped: this run passed its time limit of {limit:.0f} s on this server.",
}


class Cancelled(ZooError):
    """The run was stopped before it finished: by the visitor, a closed page, or its deadline."""

    def __init__(self, message: str, reason: str = "stopped"):
        super().__init__(message)
        self.reason = reason


class Token:
    """Whether one request should stop, and why. Thread-safe; cancelling twice keeps the first reason."""

    def __init__(self, deadline_s: float | None = None):
        self._event = threading.Event()
        self.reason: str | None = None
        self.limit_s = deadline_s
        self.deadline = time.monotonic() + deadline_s if deadline_s else None

    def cancel(self, reason: str = "stopped") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        if not self._event.is_set() and self.deadline is not None and time.monotonic() > self.deadline:
            self.cancel("deadline")
        return self._event.is_set()

    def message(self) -> str:
        return REASONS.get(self.reason or "stopped", REASONS["stopped"]).format(limit=self.limit_s or 0)

    def check(self) -> None:
        """Raise ``Cancelled`` once the token is cancelled or its deadline has passed."""
        if self.cancelled:
            raise Cancelled(self.message(), self.reason or "stopped")

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on cancellation; True if cancelled."""
        self._event.wait(seconds)
        return self.cancelled


_current: contextvars.ContextVar[Token | None] = contextvars.ContextVar("zoo_cancel_token", default=None)


def current() -> Token | None:
    """The token of the running request, if any."""
    return _current.get()


def check() -> None:
    """Raise ``Cancelled`` if the running request was stopped; free (never raises) outside one."""
    token = _current.get()
    if token is not None:
        token.check()


@contextlib.contextmanager
def holding(lock: threading.Lock, poll_s: float = 0.1) -> Iterator[None]:
    """Hold ``lock`` for the block; waiting for it, a stopped request stops waiting.

    A request queued behind another's Score-CAM on the same model would otherwise sit in
    ``lock.acquire()`` for minutes after its visitor pressed Stop.
    """
    while not lock.acquire(timeout=poll_s):
        check()
    try:
        yield
    finally:
        lock.release()


def context_with(token: Token | None) -> contextvars.Context:
    """A copy of the current context in which ``token`` is the current one.

    For work handed to another thread: ``executor.submit(context.run, fn)``; run every
    step of one request (a generator's ``next``) in the same context.
    """
    context = contextvars.copy_context()
    context.run(_current.set, token)
    return context


@contextlib.contextmanager
def running(token: Token | None) -> Iterator[Token | None]:
    """Make ``token`` the current one for the block (None: no token, nothing can cancel)."""
    reset = _current.set(token)
    try:
        yield token
    finally:
        _current.reset(reset)
