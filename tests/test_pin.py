"""``python -m zoo pin`` against the loopback Hub: it reads ``model_info(files_metadata=True)``, marks what
differs from the registry, and prints registry and front-matter lines that rebuild the entries when pasted."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re

import pytest

from conftest import commit_for, run_cli
from zoo import pin as zpin
from zoo import registry
from zoo.cli import main as zoo_main
from zoo.errors import GatedRepoError, NotFoundOnHubError, WeightsUnavailableError, ZooError
from zoo.registry import BUILTIN, unsourced_pins


def pin(capsys, *args: str) -> tuple[int, str, str]:
    """``python -m zoo pin ARGS`` in this process (the command itself runs once as a subprocess, below)."""
    code = zoo_main(["pin", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def timm_on_hub(hub, tmp_path):
    """The five built-in repos (timm/<arch>.tv_in1k) on the loopback Hub, with small stand-in files.

    ``pin`` reads metadata only, so the files need not be weights; their commit, size and sha256 all differ
    from the registry's, as they would after an upstream change."""
    hosted = {}
    for i, spec in enumerate(BUILTIN):
        path = tmp_path / f"{spec.name}.safetensors"
        path.write_bytes(os.urandom(1000 + i))
        hosted[spec.name] = hub.add(spec.repo, commit_for("pin/" + spec.name), spec.filename, path)
    yield hosted
    for spec in BUILTIN:
        hub.repos.pop(spec.repo, None)


def blocks(stdout: str) -> dict[str, str]:
    """Each model's printed section, by name."""
    parts = re.split(r"\n(?=# \S+: \S+ \S+, )", stdout)
    return {m.group(1): part for part in parts if (m := re.match(r"# (\S+): ", part))}


def pasted_entry(block: str):
    """The registry lines of one section, evaluated as they would be once pasted into BUILTIN."""
    code = block.split("# zoo/registry.py, in BUILTIN:\n", 1)[1]
    code = "\n".join(line for line in code.splitlines() if line.startswith("    ")).strip().rstrip(",")
    return eval(code, vars(registry))  # noqa: S307 - our own output, evaluated as the registry module would


def test_pin_reads_each_builtin_and_prints_lines_that_rebuild_it(timm_on_hub, hub):
    result = run_cli("pin")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    today = dt.date.today().isoformat()
    assert f"Read from {hub.url} on {today}" in out
    sections = blocks(out)
    assert list(sections) == [s.name for s in BUILTIN]
    pasted = []
    for spec in BUILTIN:
        hosted, section = timm_on_hub[spec.name], sections[spec.name]
        commit = commit_for("pin/" + spec.name)
        assert f"# {spec.name}: {spec.repo} model.safetensors, main is at {commit}" in section
        # Each value that is not what the registry holds is marked, with both values.
        registry_sha = spec.sha256 or "nothing"
        assert f"DIFFERS  sha256: registry {registry_sha}, Hub {hosted.sha256}" in section
        registry_rev = spec.revision if spec.pinned else "main (not pinned)"
        assert f"DIFFERS  revision: registry {registry_rev}, Hub {commit}" in section
        assert f"DIFFERS  size: registry {spec.size_bytes or 'nothing'}, Hub {hosted.size}" in section
        # Pasted, the lines give the same entry with the Hub's values and where and when they were read.
        entry = pasted_entry(section)
        assert entry == dataclasses.replace(spec, revision=commit, size_bytes=hosted.size, sha256=hosted.sha256,
                                            provenance=entry.provenance)
        assert entry.provenance.read_on == today
        assert entry.provenance.where == ("python -m zoo pin: huggingface_hub.model_info(files_metadata=True) "
                                          f"on {hub.url}, main at {commit}")
        assert unsourced_pins(entry) == []
        pasted.append(entry)
    # The front-matter lines agree with the pasted registry, by the same check the README's front matter passes.
    import yaml

    from test_spaces import check_preload_lines

    front = yaml.safe_load(out.split("# README.md, front matter:\n", 1)[1].split("\n\n", 1)[0])
    check_preload_lines(front["preload_from_hub"], pasted)
    assert "5 of 5 differ from the registry" in out
    # One metadata request per model, with the files' metadata (blobs=true); nothing downloaded.
    api = [p for m, p in hub.requests if p.startswith("/api/models/")]
    assert api == [f"/api/models/{s.repo}/revision/main?blobs=true" for s in BUILTIN]
    assert not [p for _, p in hub.requests if "/resolve/" in p]


def test_values_the_registry_already_holds_are_not_marked(zoo, hosted, hub, tmp_path, capsys):
    # A zoo-file entry holding exactly what the Hub serves: nothing differs, and its TOML lines are printed.
    f = hosted["resnet18"]
    zoo_file = tmp_path / "zoo.toml"
    zoo_file.write_text(f'[[model]]\nname = "mine"\narch = "resnet18"\nrepo = "test/resnet18"\n'
                        f'revision = "{commit_for("resnet18")}"\nsize_bytes = {f.size}\nsha256 = "{f.sha256}"\n')
    code, out, err = pin(capsys, "mine", "--zoo", str(zoo_file))
    assert code == 0, err
    assert "#   DIFFERS" not in out and "All 1 match the registry; nothing to paste." in out
    assert f'#   same     sha256: {f.sha256}' in out
    assert "your zoo file, in the [[model]] named 'mine':" in out
    assert f'revision = "{commit_for("resnet18")}"\nsize_bytes = {f.size}\nsha256 = "{f.sha256}"' in out
    assert "preload_from_hub" not in out  # the front matter preloads the built-ins only

    # In process: a built-in that holds the Hub's values is not marked; when main moves on, only the commit is.
    spec = dataclasses.replace(BUILTIN[0], repo="test/resnet18", revision=commit_for("resnet18"), size_bytes=f.size,
                               sha256=f.sha256)
    today = dt.date.today()
    assert zpin.report(spec, zpin.read_hub_file(spec), today)[1] == []
    hub.repos["test/resnet18"].commit = commit_for("moved on")
    try:
        lines, differ = zpin.report(spec, zpin.read_hub_file(spec), today)
    finally:
        hub.repos["test/resnet18"].commit = commit_for("resnet18")
    assert differ == ["revision"] and any("only the commit moved" in line for line in lines)


def test_one_model_missing_on_the_hub_does_not_stop_the_others(timm_on_hub, hub, capsys):
    del hub.repos["timm/resnet101.tv_in1k"]
    code, out, err = pin(capsys)
    assert code == 2
    assert re.search(r"error: resnet101: .*timm/resnet101\.tv_in1k.*does not exist", err)
    assert list(blocks(out)) == ["resnet18", "resnet34", "resnet50", "resnet152"]
    assert "Not read: resnet101" in out
    front = out.split("preload_from_hub:\n", 1)[1]
    assert "  - timm/resnet101.tv_in1k model.safetensors  # not read from the Hub: unchanged\n" in front
    assert f"  - timm/resnet50.tv_in1k model.safetensors {commit_for('pin/resnet50')}\n" in front


def test_offline_mode_says_pin_needs_the_network(timm_on_hub, hub, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, out, err = pin(capsys)
    assert code == 2
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in err
    assert err.count("error:") == 1  # said once, not once per model
    assert not [p for _, p in hub.requests if p.startswith("/api/models/")]


@pytest.mark.parametrize("change, error, message", [
    # The loopback Hub is a mirror (not huggingface.co): the message says what a mirror must serve.
    ({"repo": "test/nope"}, NotFoundOnHubError, r"repo does not exist.*or it is private.*A mirror must answer the "
                                                r"Hub's API.*/api/models/test/nope/revision/"),
    ({"revision": "v9"}, NotFoundOnHubError, r"no branch or tag 'v9'"),
    ({"filename": "other.safetensors"}, NotFoundOnHubError, r"no file 'other\.safetensors' at main"),
])
def test_hub_errors_name_what_is_missing(zoo, hosted, change, error, message):
    with pytest.raises(error, match=message):
        zpin.read_hub_file(dataclasses.replace(zoo.get("resnet18"), **change))


def test_gated_unreachable_and_local_entries(zoo, hosted, hub):
    spec = zoo.get("resnet18")
    hub.repos["test/resnet18"].gated = True
    with pytest.raises(GatedRepoError, match="HF_TOKEN"):
        zpin.read_hub_file(spec)
    hub.repos["test/resnet18"].gated = False
    hub.fail_status = 503
    with pytest.raises(WeightsUnavailableError, match=r"answered HTTP 503"):
        zpin.read_hub_file(spec)
    hub.fail_status = None
    with pytest.raises(WeightsUnavailableError, match=r"Cannot reach the Hub .*needs the network"):
        zpin.read_hub_file(spec, endpoint="http://127.0.0.1:9")  # nothing listens on the discard port
    local = dataclasses.replace(spec, repo=None, path=str(hosted["resnet18"].path))
    with pytest.raises(ZooError, match="local file"):
        zpin.read_hub_file(local)


def test_printed_registry_lines_match_the_registrys_layout():
    # The registry's own entries are written in the layout ``pin`` prints, so a paste replaces them line for line.
    hub = zpin.HubFile("timm/resnet18.tv_in1k", "model.safetensors", "main", "a" * 40, 46807446, "b" * 64,
                       "https://huggingface.co")
    lines = zpin.registry_lines(BUILTIN[0], hub, dt.date(2026, 11, 29))
    values = re.compile(r'"[0-9a-f]{40}"|"[0-9a-f]{64}"|size=\d+')
    source = {values.sub("X", line) for line in open(registry.__file__, encoding="utf-8").read().splitlines()}
    for line in lines[:4]:
        assert values.sub("X", line) in source, line
