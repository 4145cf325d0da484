"""How every long event of the page and the API runs: a cost check, a fair turn, a token that stops it.

A tab registers its model-running events through ``long_event`` (or wraps a handler
with ``guarded``), page-load events included; every other handler is declared with
``runs_no_model``, and ``check_events`` (called by ``build_app``) refuses an app with an
event that is neither. For each request, on the server's event loop:

1. its estimate (the tab's ``cost`` function, the same estimate (``zoo.features.<feature>.estimate``) the page
   shows) is checked against the ceiling (``zoo.limits.Gate``): over it, the request is
   refused before any work, with a message that names the limit;
2. it waits for a slot of its lane (quick or long) and, for long work, its visitor's
   turn: one visitor cannot hold the server, and a cheap classify never waits behind a
   batch;
3. the handler runs in a worker thread with a cancellation token (``zoo.cancel``) as
   the current one. The token is cancelled when the visitor presses Stop (gradio cancels
   this coroutine), when the page or the API stream is closed (polled here), or when the
   deadline passes; the work then ends within about one residual block, and only then is
   the slot released;
4. errors: a ``ZooError`` (a limit, a bad setting, a stop at the deadline) is written in
   the page where the result would be (or raised as ``gr.Error`` for API clients);
   anything else is logged with its traceback and answered with one generic message, so
   no server detail (paths, object reprs) reaches a visitor.

Generators (Batch, Depth lab, ranking) stream the same way, each step in the worker
thread under the same token. Nothing here imports torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hmac
import html
import inspect
import ipaddress
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import gradio as gr

from zoo import cancel
from zoo.errors import ZooError
from zoo.limits import Gate, InFlight, Limits, UploadBudget

from .errors import user_message

log = logging.getLogger("rde")

GENERIC_ERROR = ("Something went wrong on the server while running this. The details are in the server's log; "
                 "try again, or try other settings.")
STOPPED = "Nothing more is computed for that run; anything shown here is from an earlier run."
POLL_S = 0.5  # how often a running request checks that its visitor is still connected


@dataclass
class Guard:
    """What every guarded event of one app shares: the gate, the worker threads, the upload budget."""

    gate: Gate
    executor: ThreadPoolExecutor
    uploads: UploadBudget
    trust_proxy: bool = False  # take the visitor's address from X-Forwarded-For (behind a Space's proxy)
    demo: Any = None  # the gr.Blocks, to see whether a request's connection is still open
    calls: InFlight = field(default_factory=lambda: InFlight(Limits().max_tool_calls, Limits().tool_calls_total))
    # ^ MCP tool calls in flight (ui.server, ui.mcp)
    # Proves a loopback request comes from this app's own MCP client (ui.mcp), which alone may
    # say whose call it makes (VISITOR_HEADER). Per app, never sent to a visitor.
    relay_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @classmethod
    def create(cls, limits: Limits | None = None, trust_proxy: bool = False) -> Guard:
        limits = limits or Limits()
        # Bounded: at most one thread per slot (plus one for estimates), however many requests come and go.
        workers = limits.long_slots + limits.quick_slots + 1
        return cls(Gate(limits), ThreadPoolExecutor(workers, thread_name_prefix="rde-work"),
                   UploadBudget(limits.upload_bytes, limits.upload_window_s), trust_proxy,
                   calls=InFlight(limits.max_tool_calls, limits.tool_calls_total))

    @property
    def limits(self) -> Limits:
        return self.gate.limits


# --- who is asking --------------------------------------------------------------------

# Whose MCP tool call a loopback request makes: set by ui.server's middleware on the tool call
# (from the real connection, or the trusted proxy's header), forwarded by gradio's MCP server
# on its loopback call, and believed only beside RELAY_HEADER (the app's secret, which gradio's
# MCP client of this app sends: ui.mcp). From anyone else both are removed.
VISITOR_HEADER = "x-rde-visitor"
RELAY_HEADER = "x-rde-relay"


def is_loopback(peer: str | None) -> bool:
    try:
        return peer is not None and ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


def relayed(headers: Any, peer: str | None, secret: str | None) -> bool:
    """Does this request come from the app's own MCP client (loopback, with the app's secret)?"""
    sent = headers.get(RELAY_HEADER) if headers is not None else None
    return bool(secret and sent and is_loopback(peer) and hmac.compare_digest(str(sent), secret))


def client_address(headers: Any, peer: str | None, trust_proxy: bool, secret: str | None = None) -> str:
    """The visitor's address: the connection's peer, or behind a trusted proxy the last public
    address of ``X-Forwarded-For``; for the app's own MCP client (``relayed``), its caller's (``VISITOR_HEADER``).

    A Space's proxy appends the address it saw to ``X-Forwarded-For`` (the peer itself is an
    internal 10.x address); entries to its left come from the client and can be forged, so
    the rightmost public address is the one the proxy vouches for. Without a proxy
    (``trust_proxy`` off) the header is ignored: anyone could send it. (uvicorn's own reading
    of it is switched off: ``ui.server.distrust_forwarded_headers``.)
    """
    if relayed(headers, peer, secret) and headers.get(VISITOR_HEADER):
        return str(headers.get(VISITOR_HEADER))[:64]
    if trust_proxy:
        forwarded = headers.get("x-forwarded-for") if headers is not None else None
        for part in reversed([p.strip() for p in (forwarded or "").split(",") if p.strip()]):
            try:
                addr = ipaddress.ip_address(part)
            except ValueError:
                continue
            if addr.is_global:
                return str(addr)
    return peer or "unknown"


def visitor_key(request: gr.Request | None, guard: Guard) -> str:
    if request is None:
        return "unknown"
    try:
        headers = request.headers
        client = request.client
        peer = getattr(client, "host", None)
    except AttributeError:
        return "unknown"
    return client_address(headers, peer, guard.trust_proxy, guard.relay_secret)


def connection_closed(demo: Any, request: gr.Request | None) -> bool:
    """True once gradio has marked this request's event dead: its page or its API stream closed.

    Gradio notices a closed ``/queue/data`` or ``/call`` stream and sets ``alive`` False on
    that session's events (``Queue.clean_events``) but does not stop a running function;
    this reads that flag. A private structure of gradio 6: when it is not there, nothing
    is ever reported closed (Stop and the deadline still work).
    """
    raw = getattr(request, "request", None) if request is not None else None
    queue = getattr(demo, "_queue", None)
    if raw is None or queue is None:
        return False
    try:
        events = [e for job in list(queue.active_jobs) if job for e in job if e.request is raw]
    except Exception:  # noqa: BLE001 - gradio's internals changed: rely on Stop and the deadline
        return False
    return bool(events) and not any(e.alive for e in events)


# --- running one request ----------------------------------------------------------------

def show_progress(progress: Any, fraction: float | None, text: str) -> None:
    """Report a step to gradio's progress bar (``fraction`` None: a step of unknown length).

    Gradio 6's status tracker shows a step's text only beside a level: after a bare
    ``progress(None, desc=...)`` the page shows "processing" and a timer, nothing else.
    A step of unknown length is therefore shown at 0 %.
    """
    progress(0.0 if fraction is None else fraction, desc=text)


async def _in_thread(guard: Guard, context: contextvars.Context, token: cancel.Token,
                     request: gr.Request | None, call: Callable[[], Any]) -> Any:
    """``call()`` in a worker thread under ``context``; cancel the token on Stop or a closed connection.

    Returns only when the work has ended, also when this coroutine is cancelled (Stop):
    the token is cancelled, the thread ends within about one block, then CancelledError
    goes on to gradio, which frees the concurrency slot.
    """
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(guard.executor, context.run, call)
    try:
        while True:
            done, _ = await asyncio.wait({future}, timeout=POLL_S)
            if done:
                return future.result()
            if connection_closed(guard.demo, request):
                token.cancel("closed")
    except asyncio.CancelledError:
        token.cancel("stopped")
        while not future.done():
            try:
                await asyncio.wait({future})
            except asyncio.CancelledError:  # a second Stop: the work is already stopping
                continue
        future.exception()  # retrieved (it is usually zoo.cancel.Cancelled): asyncio would log it otherwise
        raise


def _special(fn: Callable) -> int:
    """How many leading positional parameters of ``fn`` are inputs (before a ``gr.Progress`` default)."""
    n = 0
    for p in inspect.signature(fn).parameters.values():
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) or isinstance(p.default, gr.Progress):
            break
        n += 1
    return n


@dataclass
class _Call:
    """What every request of one guarded handler shares: its gate, its cost, where its errors go."""

    guard: Guard
    fn: Callable
    cost: Callable[..., Any] | None
    what: str
    outputs: list[Any] | None
    at: int | None  # the output an error is written to; None: raised as gr.Error
    n_inputs: int
    takes_progress: bool

    def failed(self, text: str) -> Any:
        if self.at is None:
            raise gr.Error(text, print_exception=False)
        return tuple(error_markdown(text) if i == self.at else None for i in range(len(self.outputs or [])))

    def unexpected(self, e: BaseException) -> Any:
        log.error("Unexpected error in %s", getattr(self.fn, "__name__", self.fn), exc_info=e)
        return self.failed(GENERIC_ERROR)

    async def admitted(self, args: tuple, request: gr.Request | None) -> tuple[str, Any]:
        """(visitor, admission) for this request, or raise ``ZooError`` / ``gr.Error``."""
        gate = self.guard.gate
        if self.cost is None:
            admission = gate.check(0, 0.0, self.what)
        else:
            loop = asyncio.get_running_loop()
            est = await loop.run_in_executor(self.guard.executor, functools.partial(self.cost, *args[:self.n_inputs]))
            # None: this request costs at most a moment (e.g. the zoo's tables without timing).
            admission = (gate.check(0, 0.0, self.what) if est is None
                         else gate.check(est.forwards, est.seconds, self.what))
        return visitor_key(request, self.guard), admission

    def split(self, args: tuple) -> tuple[tuple, gr.Request | None, Any]:
        *rest, request = args
        progress = rest[self.n_inputs] if self.takes_progress and len(rest) > self.n_inputs else None
        return tuple(rest), request, progress

    @staticmethod
    def told(progress: Any) -> Callable[[str], None]:
        return (lambda text: show_progress(progress, None, text)) if progress is not None else (lambda text: None)

    @contextlib.asynccontextmanager
    async def turn(self, args: tuple, request: gr.Request | None, progress: Any):
        """Admitted (ceiling, lane, the visitor's turn) for the block: (token, context to run the work in)."""
        # Said at once: the estimate, a wait for a slot or a first download may follow, and
        # until a first message the page shows only gradio's "processing" and a timer.
        self.told(progress)(f"{self.what}: checking its cost")
        visitor, admission = await self.admitted(args, request)
        async with self.guard.gate.admit(visitor, admission, self.told(progress)):
            token = cancel.Token(admission.deadline_s)
            yield token, cancel.context_with(token)


def _streaming(call: _Call) -> Callable:
    """The guarded handler of a generator: each step in the worker thread, under the request's token."""
    async def handler(*args: Any) -> Any:
        args, request, progress = call.split(args)
        try:
            async with call.turn(args, request, progress) as (token, context):
                steps = context.run(call.fn, *args)
                end = object()
                try:
                    while True:
                        item = await _in_thread(call.guard, context, token, request,
                                                functools.partial(next, steps, end))
                        if item is end:
                            return
                        yield item
                finally:
                    context.run(steps.close)
        except (ZooError, gr.Error) as e:
            yield call.failed(user_message(e, args))
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as e:  # noqa: BLE001 - a bug: logged, and one generic message
            yield call.unexpected(e)

    return handler


def _plain(call: _Call) -> Callable:
    """The guarded handler of a plain function: it runs in the worker thread under the request's token."""
    async def handler(*args: Any) -> Any:
        args, request, progress = call.split(args)
        try:
            async with call.turn(args, request, progress) as (token, context):
                return await _in_thread(call.guard, context, token, request, functools.partial(call.fn, *args))
        except (ZooError, gr.Error) as e:
            return call.failed(user_message(e, args))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            return call.unexpected(e)

    return handler


def guarded(guard: Guard, fn: Callable, cost: Callable[..., Any] | None = None,
            outputs: list[Any] | None = None, message: Any = None, what: str = "This run") -> Callable:
    """``fn`` (a plain handler or a generator) as a guarded async handler with the same inputs.

    ``cost(*inputs)`` returns an ``Estimate`` (``forwards``, ``seconds``), or None for a
    request that costs at most a moment; ``cost=None`` means every request does (both
    run in the quick lane with no ceiling check).
    With ``outputs`` and ``message`` (one of them), an error is written in ``message``, where
    the result would be, and every other output (the state too) is cleared, so nothing
    stale stays beside it or is redrawn later; it stays until the next run. Without them,
    errors are raised as ``gr.Error``: an API client needs an error, not a page. Either way the
    text is ``ui.errors.user_message``'s (an upload named as the visitor named it), so ``fn``
    needs no ``user_errors`` of its own.
    """
    signature = inspect.signature(fn)
    call = _Call(guard, fn, cost, what, outputs,
                 None if outputs is None else next(i for i, c in enumerate(outputs) if c is message),
                 _special(fn), any(isinstance(p.default, gr.Progress) for p in signature.parameters.values()))
    streams = inspect.isgeneratorfunction(fn) or inspect.isgeneratorfunction(inspect.unwrap(fn))
    handler = _streaming(call) if streams else _plain(call)
    # Gradio reads a handler's parameters to pass gr.Progress and gr.Request: the inputs,
    # then fn's own progress parameter, then the request.
    params = [p for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                    annotation=gr.Request))
    handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler.__annotations__ = {"request": gr.Request}
    handler.__name__ = getattr(fn, "__name__", "handler")
    handler.__doc__ = fn.__doc__
    setattr(handler, GATE_MARK, GUARDED)
    return handler


def long_event(guard: Guard, trigger: Callable, fn: Callable, inputs: list[Any], outputs: list[Any], *,
               cost: Callable[..., Any] | None, message: Any = None, stop: Any = None, what: str = "This run",
               stopped: str = STOPPED, **kwargs: Any) -> Any:
    """Register ``fn`` on ``trigger`` (e.g. ``button.click``) as a guarded event.

    ``message``: the output where errors (and, with ``stop``, "Stopped") are written; API
    events leave it None. The gate, not gradio's queue, limits how many run at once, so
    the event has no concurrency limit of its own.
    """
    handler = guarded(guard, fn, cost, outputs if message is not None else None, message, what)
    event = trigger(handler, inputs, outputs, concurrency_limit=None, **kwargs)
    if stop is not None:
        stop_button(stop, [event], message, stopped)
    return event



# --- every event through the gate ---------------------------------------------------------

GATE_MARK = "rde_gate"  # on every handler an event of the app may run: how it relates to the gate
GUARDED = "guarded"  # made by ``guarded``: ceiling, lane, turn, token
NO_MODEL = "runs no model"  # declared with ``runs_no_model``
EXAMPLE = "cached example"  # declared with ``cached_example``


def runs_no_model(fn: Callable) -> Callable:
    """Declare that ``fn`` runs no model (an estimate, a re-render of a kept result, a tab switch).

    An event's handler must be either ``guarded`` or declared here (``check_events``); the
    declaration is the reviewer's cue: nothing reached from ``fn`` may run a network on data.
    """
    setattr(fn, GATE_MARK, NO_MODEL)
    return fn


def cached_example(fn: Callable) -> Callable:
    """Declare ``fn`` as a ``gr.Examples`` function: it runs a model, on one of the fixed examples only,
    at the tab's defaults (a bounded, known cost). Gradio runs it at most once per example (a
    lock per example; at start on a CPU Space) and serves the cached result after that."""
    setattr(fn, GATE_MARK, EXAMPLE)
    return fn


def _gradio_examples_event(fn: Callable) -> str | None:
    """How the events ``gr.Examples`` registers relate to the gate, or None for any other function."""
    if getattr(fn, "__module__", None) != "gradio.helpers":
        return None
    if fn.__name__ in ("load_example_input", "load_example"):  # copy a fixed example into the inputs
        return NO_MODEL
    if fn.__name__ == "load_example_output":  # the cached result; on a miss, the Examples' own fn
        for cell in fn.__closure__ or ():
            with contextlib.suppress(ValueError):
                if isinstance(cell.cell_contents, gr.helpers.Examples):
                    return EXAMPLE if getattr(cell.cell_contents.fn, GATE_MARK, None) == EXAMPLE else None
    return None


def unguarded_events(demo: Any) -> list[str]:
    """The app's events whose handler is neither ``guarded`` nor declared (``runs_no_model``,
    ``cached_example`` for gradio's examples): each "fn_index name (trigger)"; [] when none."""
    found = []
    for index, block_fn in demo.fns.items():
        fn = block_fn.fn
        if fn is None:  # browser code only
            continue
        mark = _gradio_examples_event(fn) or getattr(fn, GATE_MARK, None)
        if mark not in (GUARDED, NO_MODEL, EXAMPLE) or (mark == EXAMPLE and _gradio_examples_event(fn) is None):
            triggers = ", ".join(str(event) for _, event in block_fn.targets)
            found.append(f"{index} {block_fn.name} ({triggers})")
    return found


def check_events(demo: Any) -> None:
    """Refuse to build an app with an event that could run a model outside the gate (``unguarded_events``)."""
    found = unguarded_events(demo)
    if found:
        raise RuntimeError("Every event must be registered with ui.guard.long_event (or its handler wrapped in "
                           "guarded), or its handler declared with runs_no_model: " + "; ".join(found))


def error_markdown(message: str) -> str:
    """An error as the page shows it, in place of the result (styled by ``.rde-error`` in ui/app.py)."""
    return f'<div class="rde-error" role="alert"><strong>Could not run:</strong> {html.escape(message)}</div>'


def stopped_html(text: str = STOPPED) -> str:
    return f'<div class="rde-stopped" role="status"><strong>Stopped.</strong> {html.escape(text)}</div>'


def stop_button(button: Any, events: list[Any], message: Any = None, text: str = STOPPED) -> None:
    """``button`` stops ``events``: gradio cancels the handler, whose token ends the work.

    With ``message``, "Stopped." and ``text`` are written there, where the result would be.
    """
    if message is None:
        button.click(None, None, None, cancels=events, api_visibility="private")
    else:
        button.click(runs_no_model(lambda: stopped_html(text)), None, [message], cancels=events,
                     api_visibility="private", show_progress="hidden")

