"""Every event that can run a model goes through the one gate (ui/guard.py), page-load events included.

Issue 29, item 2: the Model zoo's page-load event ran its inputs unguarded when joined
through /gradio_api/queue/join ([448, "resnet152", true]: 48 s, no Stop, no ceiling).
"""

from __future__ import annotations

import inspect
import json

import gradio as gr
import httpx
import pytest

CEILING_S = 5.0


@pytest.fixture(scope="module")
def gated(zoo, hosted):
    """(url, demo) of an app with a 5 s ceiling per request, as a public deployment has one."""
    from ui import build_app, launch_options
    from zoo.limits import Limits
    from zoo.runtime import Runtime

    demo = build_app(Runtime(zoo, "cpu", precision="fp32"), limits=Limits(max_request_seconds=CEILING_S))
    demo.queue(default_concurrency_limit=2, max_size=64)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            **launch_options(demo))
    yield url.rstrip("/"), demo
    demo.close()


def test_every_event_is_guarded_or_declared_to_run_no_model(gated):
    from ui.guard import EXAMPLE, GATE_MARK, GUARDED, NO_MODEL, unguarded_events

    _, demo = gated
    assert unguarded_events(demo) == []
    marks: dict[str, set[str]] = {}
    for dep in demo.config["dependencies"]:  # what the page (and anyone) can call, by fn_index
        block_fn = demo.fns[dep["id"]]
        if block_fn.fn is None:
            continue
        mark = getattr(block_fn.fn, GATE_MARK, None)
        if block_fn.fn.__module__ == "gradio.helpers":
            mark = "gradio's examples"
        marks.setdefault(mark, set()).add(block_fn.name)
    assert set(marks) <= {GUARDED, NO_MODEL, "gradio's examples"}, marks
    # Every public endpoint, and every page event whose handler runs a model, is guarded:
    # the page-load events of the Model zoo among them.
    api = {fn.api_name for fn in demo.fns.values() if fn.api_name and fn.api_visibility == "public"}
    guarded_names = {fn.api_name for fn in demo.fns.values() if getattr(fn.fn, GATE_MARK, None) == GUARDED}
    assert api <= guarded_names, api - guarded_names
    loads = [fn for fn in demo.fns.values() if any(event == "load" for _, event in fn.targets) and fn.fn]
    zoo_loads = [fn for fn in loads if fn.name.startswith("refresh")]
    assert zoo_loads and all(getattr(fn.fn, GATE_MARK) == GUARDED for fn in zoo_loads)
    assert all(getattr(fn.fn, GATE_MARK) in (GUARDED, NO_MODEL) for fn in loads)
    # Gradio's example events: the result loader runs the examples' own function, declared as such.
    examples = [fn for fn in demo.fns.values() if fn.fn is not None and fn.fn.__name__ == "load_example_output"]
    assert examples
    for fn in examples:
        (inner,) = [c.cell_contents for c in fn.fn.__closure__ if isinstance(c.cell_contents, gr.helpers.Examples)]
        assert getattr(inner.fn, GATE_MARK) == EXAMPLE


def test_an_app_with_an_undeclared_event_is_not_built():
    from ui.guard import check_events, runs_no_model, unguarded_events

    with gr.Blocks() as demo:
        box = gr.Textbox()
        button = gr.Button()
        button.click(lambda text: text.upper(), [box], [box])  # whatever it does, nobody said
        button.click(runs_no_model(lambda text: text.lower()), [box], [box])
        demo.load(lambda: "hello", None, [box])
    found = unguarded_events(demo)
    assert len(found) == 2 and "click" in found[0] and "load" in found[1], found
    with pytest.raises(RuntimeError, match="runs_no_model"):
        check_events(demo)


def join(url: str, fn_index: int, data: list, session: str) -> dict:
    """The page's queue protocol, as a raw client uses it: join, then read the session's stream to the end."""
    r = httpx.post(f"{url}/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "trigger_id": None,
                                                         "session_hash": session, "event_data": None}, timeout=30)
    r.raise_for_status()
    with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}, timeout=120) as s:
        for line in s.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg
    raise AssertionError("no answer")


def test_the_zoo_page_load_event_refuses_inputs_over_the_ceiling(gated, monkeypatch):
    """Joining the load event with its button's forbidden inputs is refused before any model runs."""
    from zoo import stats

    url, demo = gated
    timed: list[str] = []  # refused before any work: no latency is measured (the app runs in this process)
    real = stats.measure_latency
    monkeypatch.setattr(stats, "measure_latency", lambda *a, **k: timed.append("timed") or real(*a, **k))
    config = httpx.get(f"{url}/config", timeout=30).json()
    table = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "zoo-table")
    (load,) = [d for d in config["dependencies"]
               if any(t[1] == "load" for t in d["targets"]) and table in d["outputs"]]
    msg = join(url, load["id"], [448, "resnet152", True], "load-448")
    assert msg["success"] is False, msg
    assert f"this server allows {CEILING_S:.0f} s per request" in msg["output"]["error"], msg
    assert timed == []
    # The page's own load (latency not ticked) still fills the tables.
    msg = join(url, load["id"], [224, "resnet18", False], "load-224")
    assert msg["success"] is True, msg


# --- one conversion of a ZooError (ui/errors.py), for plain and streaming handlers, gated or not ----------

UPLOAD_PATH = "/tmp/gradio/3f2a/upload.png"


def refuse(upload, text: str = "x"):
    from zoo.errors import ImageError

    raise ImageError(f"{upload.path} is not an image.")


def refuse_streaming(upload, text: str = "x"):
    from zoo.errors import ImageError

    yield "a first step"
    raise ImageError(f"{upload.path} is not an image.")


@pytest.mark.parametrize("handler", [refuse, refuse_streaming])
def test_user_errors_names_the_upload_for_plain_and_streaming_handlers(handler):
    from ui.errors import Upload, user_errors

    wrapped = user_errors(handler)
    with pytest.raises(gr.Error) as e:
        out = wrapped(Upload(UPLOAD_PATH, "holiday.png"))
        list(out)  # a generator raises as it is consumed
    assert e.value.message == "holiday.png is not an image."
    assert UPLOAD_PATH not in e.value.message


@pytest.mark.parametrize("handler", [refuse, refuse_streaming])
@pytest.mark.parametrize("in_page", [True, False])
def test_the_gate_converts_a_zoo_error_as_user_errors_does(handler, in_page):
    """Gated, with or without user_errors around the handler, the text is the same: no server path."""
    import asyncio

    from ui.errors import Upload, user_errors
    from ui.guard import Guard, guarded

    guard = Guard.create()
    outputs = [gr.Markdown(), gr.JSON()] if in_page else None
    upload = Upload(UPLOAD_PATH, "holiday.png")

    async def answers(fn) -> list:
        handler_ = guarded(guard, fn, outputs=outputs, message=outputs[0] if outputs else None)
        if inspect.isasyncgenfunction(handler_):
            return [item async for item in handler_(upload, "x", None)]
        return [await handler_(upload, "x", None)]

    for fn in (handler, user_errors(handler)):
        if in_page:
            last = asyncio.run(answers(fn))[-1]
            assert "holiday.png is not an image." in last[0] and UPLOAD_PATH not in last[0] and last[1] is None
        else:
            with pytest.raises(gr.Error) as e:
                asyncio.run(answers(fn))
            assert e.value.message == "holiday.png is not an image."
