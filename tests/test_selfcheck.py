"""The deployment self-check (zoo/selfcheck.py): weights built to answer the photos pass; each fault fails with its own message.

The weights (tests/selfcheck_weights.py) are a random ResNet-18 trunk whose fc is solved so that
each example photo gets its first accepted class, hosted on the loopback Hub at a pinned commit
like every test model. Everything runs in fp32.
"""

from __future__ import annotations

import json

import pytest

from conftest import commit_for, run_cli
from selfcheck_weights import save, selfcheck_state, swapped_keys


@pytest.fixture(scope="module")
def checked_weights(hub, weights_dir):
    """{"good": HostedFile, "keys": HostedFile}: the passing weights, and the same tensors under swapped keys."""
    state = selfcheck_state()
    return {name: hub.add(f"test/selfcheck-{name}", commit_for(f"selfcheck-{name}"), "model.safetensors",
                          save(s, weights_dir / f"selfcheck-{name}.safetensors"))
            for name, s in (("good", state), ("keys", swapped_keys(state)))}


def entry(name: str, hosted, **extra) -> str:
    fields = {"name": name, "arch": "resnet18", "repo": f"test/selfcheck-{hosted}",
              "revision": commit_for(f"selfcheck-{hosted}"), **extra}
    return "[[model]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items()) + "\n"


@pytest.fixture(scope="module")
def checked_zoo(checked_weights, tmp_path_factory):
    """A zoo file with the passing model and one entry per fault that an entry can carry."""
    from zoo.models import imagenet_labels

    labels = list(imagenet_labels())
    shuffled = labels[1:] + labels[:1]  # every class one place off
    path = tmp_path_factory.mktemp("selfcheck") / "zoo.toml"
    good, keys = checked_weights["good"], checked_weights["keys"]
    path.write_text("\n".join([
        entry("good", "good", sha256=good.sha256),
        entry("wrong-norm", "good", sha256=good.sha256, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
        entry("shuffled", "good", sha256=good.sha256, labels=shuffled),
        entry("wrong-keys", "keys", sha256=keys.sha256),
        entry("unpinned", "good", revision="main"),
        entry("bad-sha", "good", sha256="0" * 64),
    ]))
    return path


def selfcheck(rt, models):
    """The self-check feature (zoo.features.selfcheck), imported once the test's Hub is set up."""
    from zoo.features.selfcheck import selfcheck as run

    return run(rt, models)


@pytest.fixture(scope="module")
def rt(checked_zoo):
    from zoo.registry import Zoo
    from zoo.runtime import Runtime

    return Runtime(Zoo.load(checked_zoo), "cpu", precision="fp32")


def test_weights_that_answer_as_imagenet_pass(rt, checked_weights):
    result = selfcheck(rt, ["good"])
    (m,) = result.models
    assert m.passed and m.status == "pass" and result.passed
    assert m.pin_ok is True and m.pin.startswith("commit ")
    assert m.sha_ok is True and checked_weights["good"].sha256[:16] in m.sha
    assert [p.file for p in m.photos] == ["chelsea.png", "coffee.png", "rocket.jpg"]
    assert [p.top5[0]["label"] for p in m.photos] == ["tabby", "espresso", "missile"]
    assert all(p.input.kind == "ok" for p in m.photos)
    assert result.health_line().startswith("Self-check: the model passes (sha256 verified")
    js = result.to_json()
    assert js["models"][0]["photos"][0]["accepted"] == ["tabby", "tiger cat", "Egyptian cat"]


def test_a_wrong_mean_and_std_fail_and_are_named(rt):
    (m,) = selfcheck(rt, ["wrong-norm"]).models
    assert not m.passed and m.sha_ok  # the file is fine: the recipe is not
    assert {p.input.kind for p in m.photos} == {"normalisation"}
    assert m.photos[0].input.mean == pytest.approx((0.5, 0.5, 0.5), abs=1e-3)
    assert m.photos[0].input.std == pytest.approx((0.5, 0.5, 0.5), abs=1e-3)
    assert "normalised as if with mean (0.500, 0.500, 0.500) and std (0.500, 0.500, 0.500)" in m.diagnosis
    assert "Check 'mean' and 'std'" in m.diagnosis and "3 of 3 photos would pass" in m.diagnosis


def test_a_bgr_input_fails_and_is_named(rt, monkeypatch):
    """A pipeline that feeds BGR (as OpenCV decodes): the fault is in code, so it is put into the code."""
    import zoo.inference

    original = zoo.inference.to_tensor
    monkeypatch.setattr(zoo.inference, "to_tensor", lambda crop, pre: original(crop, pre).flip(1))
    (m,) = selfcheck(rt, ["good"]).models
    assert not m.passed and {p.input.kind for p in m.photos} == {"bgr"}
    assert m.diagnosis.startswith("The input's colour channels are swapped (BGR instead of RGB).")
    assert "RGB order" in m.diagnosis


def test_a_shuffled_class_list_fails_and_is_named(rt):
    (m,) = selfcheck(rt, ["shuffled"]).models
    assert not m.passed and all(p.input.kind == "ok" and p.by_index for p in m.photos)  # right answers, wrong names
    assert "The class list is not in ImageNet's order: class 281 is called 'tiger cat' here, ImageNet's 'tabby'" \
        in m.diagnosis
    assert "Check 'labels'" in m.diagnosis


def test_weights_under_the_wrong_keys_fail_and_are_named(rt):
    (m,) = selfcheck(rt, ["wrong-keys"]).models
    assert not m.passed and m.sha_ok and all(p.input.kind == "ok" for p in m.photos)
    assert "weights are loaded under the wrong keys" in m.diagnosis
    assert "The file is the verified one" in m.diagnosis


def test_unpinned_weights_pass_with_a_warning_and_a_bad_file_fails(rt, hub, weights_dir):
    result = selfcheck(rt, ["unpinned", "good"])
    unpinned = result.models[0]
    assert unpinned.passed and unpinned.status == "warn" and unpinned.pin_ok is False
    assert "not pinned" in unpinned.pin
    assert result.health_line().endswith("not pinned: unpinned.")
    (bad,) = selfcheck(rt, ["bad-sha"]).models
    assert not bad.passed and bad.sha_ok is False and bad.photos == []
    assert bad.diagnosis.startswith("The weights file is not the pinned one:") and "sha256" in bad.diagnosis


def test_the_command_line(checked_zoo):
    ok = run_cli("selfcheck", "--zoo", str(checked_zoo), "--models", "good", "wrong-norm", "--precision", "fp32")
    assert ok.returncode == 1, ok.stderr  # one of the two fails
    assert "good: PASS" in ok.stdout and "wrong-norm: FAIL" in ok.stdout
    assert "  pass chelsea.png (a tabby cat; accepted: tabby / tiger cat / Egyptian cat): tabby" in ok.stdout
    assert "Self-check: 1 of 2 models pass; wrong-norm fails." in ok.stdout
    unpinned = run_cli("selfcheck", "--zoo", str(checked_zoo), "--models", "unpinned", "--precision", "fp32")
    (line,) = [x for x in unpinned.stdout.splitlines() if x.startswith("  pin:")]
    assert line.count("not pinned") == 1, line  # issue 31: it was said twice on one line


def test_the_endpoint_of_the_model_zoo_tab(app):
    """/selfcheck (the Model zoo tab's section, and an MCP tool): the session's random weights fail, named."""
    from rest import result

    url, _ = app
    text, details = result(url, "selfcheck", [["resnet18"]])
    (m,) = details["models"]
    assert m["model"] == "resnet18" and m["status"] == "fail" and m["sha256_ok"] is True
    assert "wrong keys" in m["diagnosis"] and "| resnet18 | **fails** |" in text
