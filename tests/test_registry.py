"""The registry is data: built-in facts, TOML zoo files and their errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from zoo.errors import UnknownModelError, ZooFileError
from zoo.registry import ARCHITECTURES, BUILTIN, Provenance, Zoo, parse_zoo_file, unsourced_pins, valid_revision


def test_builtins_match_the_issue_table():
    by_name = {s.name: s for s in BUILTIN}
    assert list(by_name) == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    r50 = by_name["resnet50"]
    assert r50.repo == "timm/resnet50.tv_in1k"
    assert r50.revision == "78f3ecfdb38e06d9b8397f662e7ab8fee96026fa" and r50.pinned
    assert r50.sha256 == "5d061a3c593d795bfe682d9b152bafbcf550579873492def3515b46db1189888"
    assert r50.size_bytes == 102469840 and (r50.top1, r50.top5) == (76.13, 92.86)
    assert by_name["resnet101"].revision == "main" and by_name["resnet101"].sha256 is None
    r152 = by_name["resnet152"]
    assert r152.revision == "1f8fa579af406a6f10e457a6dce6909c9157a70f" and r152.pinned and r152.size_bytes is None
    assert r152.sha256 == "15897077afdf4d6334dc0c3f8e6fb483afb3faa9298c139f3c6eb29bca6ae5b2"
    assert [a.blocks_per_stage for a in ARCHITECTURES.values()] == [
        (2, 2, 2, 2), (3, 4, 6, 3), (3, 4, 6, 3), (3, 4, 23, 3), (3, 8, 36, 3)]
    assert [a.paper_flops for a in ARCHITECTURES.values()] == [1.8e9, 3.6e9, 3.8e9, 7.6e9, 11.3e9]
    for s in BUILTIN:
        p = s.preprocessing
        assert (p.resize, p.crop, p.interpolation, p.antialias) == (256, 224, "bilinear", True)
        assert s.cam_layer == "layer4" and s.license == "bsd-3-clause"
        # frozen: nobody can change a shared entry at run time
        with pytest.raises(AttributeError):
            s.repo = "x"  # type: ignore[misc]


def test_every_builtin_pin_has_a_recorded_source():
    # A pinned commit, size or sha256 is a claim about bytes on the Hub: each says where it was read and when.
    # A value nobody can show a source for must not be a hard check (leave it out: the ETag check remains).
    for spec in BUILTIN:
        assert unsourced_pins(spec) == [], (
            f"{spec.name} pins {unsourced_pins(spec)} without a source: give it read=Provenance(date, where) "
            "(`python -m zoo pin` prints one), or leave the value out")
        if spec.provenance is not None:
            assert "huggingface.co" in spec.provenance.where or "zoo pin" in spec.provenance.where, spec.name
    assert [s.name for s in BUILTIN if s.provenance is None] == ["resnet101"]  # nothing pinned, nothing to source


def test_an_unsourced_pin_is_caught():
    r18 = next(s for s in BUILTIN if s.name == "resnet18")
    today = dt.date(2026, 11, 29)
    assert unsourced_pins(dataclasses.replace(r18, provenance=None)) == ["revision", "size_bytes", "sha256"]
    bare = dataclasses.replace(r18, revision="main", size_bytes=None, provenance=None)
    assert unsourced_pins(bare) == ["sha256"]  # a digest alone needs a source too
    assert unsourced_pins(dataclasses.replace(bare, sha256=None)) == []  # nothing pinned: the Hub's ETag decides
    for bad in (Provenance("2026-11-30", "https://huggingface.co/x"),  # read tomorrow
                Provenance("last week", "https://huggingface.co/x"),  # not a date
                Provenance("2026-11-29", "  ")):  # read nowhere
        assert unsourced_pins(dataclasses.replace(bare, provenance=bad), today) == ["sha256"], bad
    assert unsourced_pins(dataclasses.replace(bare, provenance=Provenance("2026-11-29", "x")), today) == []


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match=r"Unknown model 'resnet5'.*Did you mean resnet50"):
        Zoo.load().get("resnet5")


def test_zoo_file_adds_and_replaces(tmp_path, monkeypatch):
    f = tmp_path / "zoo.toml"
    f.write_text('''
[[model]]
name = "resnet50-a1"
arch = "resnet50"
repo = "timm/resnet50.a1_in1k"
crop = 224
resize = 235
interpolation = "bicubic"

[[model]]
name = "flowers"
arch = "resnet18"
repo = "me/flowers-resnet18"
labels = ["daisy", "rose", "tulip"]
sha256 = "AB''' + "0" * 62 + '''"

[[model]]
name = "resnet18"
arch = "resnet18"
repo = "mirror/resnet18"
''')
    zoo = Zoo.load(f)
    assert zoo.names[:5] == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert zoo.get("resnet18").repo == "mirror/resnet18"  # replaced in place
    a1 = zoo.get("resnet50-a1")
    assert a1.preprocessing.resize == 235 and a1.preprocessing.interpolation == "bicubic"
    assert a1.filename == "model.safetensors" and a1.revision == "main" and a1.num_classes == 1000
    flowers = zoo.get("flowers")
    assert flowers.num_classes == 3 and flowers.sha256 == "ab" + "0" * 62
    monkeypatch.setenv("ZOO_FILE", str(f))
    assert "flowers" in Zoo.load()


@pytest.mark.parametrize("body, message", [
    ('[[model]]\nname = "x"\narch = "resnet50"\nrepo = "a/b"\nrepo = "c/d"\n', r"not valid TOML.*line 5"),
    ('[[model]]\nname = "x"\nrepo = "a/b"\n', r"model #1 \('x'\): required field 'arch' is missing"),
    ('[[model]]\nname = "x"\narch = "resnet51"\nrepo = "a/b"\n', r"'arch' is 'resnet51'; it must be one of resnet18"),
    ('[[model]]\nname = "x"\narch = "resnet50"\nrepo = "a/b"\ncolour = 1\n', r"unknown field\(s\) \['colour'\]"),
    ('[[model]]\nname = "x"\narch = "resnet50"\nrepo = "a/b"\nfilename = "../../etc/passwd"\n', r"without '\.\.'"),
    ('[[model]]\nname = "x"\narch = "resnet50"\nrepo = "a/b"\nfilename = "pytorch_model.bin"\n', r"only \.safetensors"),
    ('[[model]]\nname = "x"\narch = "resnet50"\nrepo = "../x"\n', r"'repo' '\.\./x' is not a Hub repo id"),
    ('[[model]]\nname = "x"\narch = "resnet50"\n', r"exactly one of 'repo'.*or 'path'"),
    ('[[model]]\nname = "x"\narch = "resnet50"\nrepo = "a/b"\nsha256 = "abc"\n', r"'sha256' must be 64 hex"),
    ('[[model]]\nname = "x"\narch = "resnet50"\nrepo = "a/b"\nlabels = "cat"\n', r"'labels' must be a list"),
    ('[[model]]\nname = "x"\narch = "resnet50"\nrepo = "a/b"\nresize = true\n', r"'resize' must be a int"),
    ('[[model]]\nname = "x"\narch = "resnet50"\nrepo = "a/b"\n[[model]]\nname = "x"\narch = "resnet18"\nrepo = "c/d"\n',
     r"name 'x' is used twice"),
    ('model = 3\n', r"array of tables"),
])
def test_malformed_zoo_files_name_the_problem(tmp_path, body, message):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(ZooFileError, match=message):
        parse_zoo_file(f)


def test_missing_zoo_file():
    with pytest.raises(ZooFileError, match="does not exist"):
        Zoo.load("/nonexistent/zoo.toml")


def test_local_path_entries_resolve_relative_to_the_file(tmp_path):
    f = tmp_path / "zoo.toml"
    f.write_text('[[model]]\nname = "mine"\narch = "resnet18"\npath = "weights/mine.safetensors"\n')
    (spec,) = parse_zoo_file(f)
    assert spec.path == str(tmp_path / "weights" / "mine.safetensors") and spec.repo is None


@pytest.mark.parametrize("revision", ["../../../X", "main/../../X", "/etc/passwd", "..", "a\\b", "refs//pr",
                                      "main/", ".hidden", "refs/.x", "x.lock", "mäin", "a b", "main@{1}", "",
                                      "~", "x:y", "a" * 201])
def test_revision_must_be_a_name_or_commit(tmp_path, revision):
    # huggingface_hub writes the revision into its cache as a path (refs/<revision>).
    f = tmp_path / "zoo.toml"
    f.write_text('[[model]]\nname = "x"\narch = "resnet18"\nrepo = "a/b"\nrevision = ' + json.dumps(revision) + "\n")
    with pytest.raises(ZooFileError, match=r"field 'revision' .* must be a branch or tag name"):
        parse_zoo_file(f)


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/1", "release_2024-01", "0" * 40,
                                      "78f3ecfdb38e06d9b8397f662e7ab8fee96026fa"])
def test_branch_tag_and_commit_revisions_are_accepted(tmp_path, revision):
    f = tmp_path / "zoo.toml"
    f.write_text(f'[[model]]\nname = "x"\narch = "resnet18"\nrepo = "a/b"\nrevision = "{revision}"\n')
    (spec,) = parse_zoo_file(f)
    assert spec.revision == revision and spec.pinned == (len(revision) == 40)
    assert all(valid_revision(s.revision) for s in BUILTIN)


@pytest.mark.parametrize("field, message", [
    ('std = [0.1, 0.1, nan]', r"'std' must be three finite numbers"),
    ('std = [0.1, inf, 0.1]', r"'std' must be three finite numbers"),
    ('std = 1e-300', r"'std' must be a list"),
    ('std = [1e-300, 0.2, 0.2]', r"'std' must be at least 0\.001"),
    ('std = [0.2, 0.2, -0.2]', r"'std' must be at least 0\.001"),
    ('mean = [0.5, nan, 0.5]', r"'mean' must be three finite numbers"),
    ('mean = [0.5, -inf, 0.5]', r"'mean' must be three finite numbers"),
])
def test_normalisation_must_be_finite_and_sane(tmp_path, field, message):
    f = tmp_path / "zoo.toml"
    f.write_text(f'[[model]]\nname = "x"\narch = "resnet18"\nrepo = "a/b"\n{field}\n')
    with pytest.raises(ZooFileError, match=message):
        parse_zoo_file(f)


def _parse_in_thread(path, seconds: float = 10.0):
    """parse_zoo_file(path) in a thread: (finished, exception). A hang must not hang the suite."""
    import threading

    out: list[BaseException | None] = []

    def run() -> None:
        try:
            parse_zoo_file(path)
            out.append(None)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    return (not t.is_alive()), (out[0] if out else None)


def test_zoo_file_that_is_a_fifo_is_refused_at_once(tmp_path):
    import os

    fifo = tmp_path / "zoo.toml"
    os.mkfifo(fifo)
    finished, error = _parse_in_thread(fifo)
    if not finished:  # unblock the reader so the thread can end
        with open(fifo, "wb"):
            pass
    assert finished, "reading a FIFO zoo file blocked"
    assert isinstance(error, ZooFileError) and "FIFO (named pipe), not a regular file" in str(error), error


def test_zoo_file_linked_to_a_device_is_refused(tmp_path):
    link = tmp_path / "zoo.toml"
    link.symlink_to("/dev/zero")
    finished, error = _parse_in_thread(link)
    assert finished and isinstance(error, ZooFileError), error
    assert "character device, not a regular file" in str(error)


def test_oversized_zoo_file_is_refused(tmp_path):
    f = tmp_path / "zoo.toml"
    f.write_text('[[model]]\nname = "x"\narch = "resnet18"\nrepo = "a/b"\n' + "# padding\n" * 120_000)
    with pytest.raises(ZooFileError, match=r"larger than 1024 KB"):
        parse_zoo_file(f)
