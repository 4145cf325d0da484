"""How a user error becomes what the visitor reads: one conversion for every handler.

A ``ZooError`` (a bad setting, a limit, a file that is not an image) says what to do; it is
shown as its text, with the server path of an uploaded file replaced by the name the visitor
gave it (``Upload``). ``user_message`` is that conversion; the gate (``ui.guard.guarded``)
writes it where the result would be, and ``user_errors`` raises it as a ``gr.Error`` for a
handler that does not pass the gate (``runs_no_model``), plain or streaming alike.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import gradio as gr

from zoo.errors import ZooError


@dataclass(frozen=True)
class Upload:
    """An uploaded image file, checked but not opened: ``zoo`` is its only decoder."""

    path: str  # resolved; a regular file inside gradio's upload folder
    name: str  # the file's name on the visitor's machine, for messages


def user_message(e: BaseException, inputs: Iterable[Any] = ()) -> str:
    """What a user error says to the visitor: a ``gr.Error``'s message, or a ``ZooError``'s text
    with each uploaded file among ``inputs`` named as the visitor knows it, not by its server path."""
    if isinstance(e, gr.Error):
        return str(e.message)
    message = str(e)
    for arg in inputs:
        if isinstance(arg, Upload):
            message = message.replace(arg.path, arg.name)
    return message


def user_errors(fn: Callable) -> Callable:
    """Show errors a user can cause as a message in the page (and the API), not a traceback."""
    def error(e: ZooError, args: tuple, kwargs: dict) -> gr.Error:
        return gr.Error(user_message(e, (*args, *kwargs.values())), print_exception=False)

    if inspect.isgeneratorfunction(fn):  # a handler that streams results (and can be stopped between them)
        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except ZooError as e:
                raise error(e, args, kwargs) from None

        return stream

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ZooError as e:
            raise error(e, args, kwargs) from None

    return wrapper
