"""The real hf_hub_download path against the loopback Hub: cache, checks and faults."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from huggingface_hub import constants

from zoo import hub as zhub
from zoo.errors import ChecksumError, GatedRepoError, NotFoundOnHubError, WeightsUnavailableError
from zoo.hub import cached_path, fetch_weights


def test_download_verifies_and_second_run_makes_no_request(zoo, hosted, hub, cold_cache, monkeypatch):
    spec = zoo.get("resnet18")
    seen: list[float | None] = []
    path = fetch_weights(spec, progress=lambda f, m: seen.append(f))
    assert Path(path).is_relative_to(cold_cache)
    assert Path(os.path.realpath(path)).name == hosted["resnet18"].sha256  # blob named by its ETag
    assert any(r[0] == "GET" for r in hub.requests)
    assert seen[-1] == 1.0 and max(f for f in seen if f is not None) == 1.0

    hub.clear_log()
    calls = []
    monkeypatch.setattr(zhub, "sha256_file", lambda *a, **k: calls.append(a) or "x")
    assert fetch_weights(spec) == path
    assert hub.requests == [] and calls == []  # no network, and no re-hash of a verified file


def test_branch_entry_is_checked_against_the_etag_and_served_from_cache(zoo, hosted, hub, cold_cache):
    spec = dataclasses.replace(zoo.get("resnet34"), revision="main", sha256=None)
    path = fetch_weights(spec)
    assert Path(os.path.realpath(path)).name == hosted["resnet34"].sha256
    hub.clear_log()
    assert fetch_weights(spec) == path and hub.requests == []


def test_corrupted_cached_file_is_detected_and_replaced(zoo, hosted, hub, cold_cache):
    spec = zoo.get("resnet18")
    path = fetch_weights(spec)
    blob = Path(os.path.realpath(path))
    with open(blob, "r+b") as f:  # flip bytes in the middle, as a bad disk would
        f.seek(blob.stat().st_size // 2)
        f.write(b"\x00" * 64)
    hub.clear_log()
    messages: list[str] = []
    again = fetch_weights(spec, progress=lambda f, m: messages.append(m))
    assert any("corrupted" in m for m in messages)
    assert any(r[0] == "GET" for r in hub.requests)
    assert zhub.sha256_file(Path(again)) == hosted["resnet18"].sha256


def test_sha256_mismatch_is_an_error_and_leaves_nothing_behind(zoo, cold_cache):
    spec = dataclasses.replace(zoo.get("resnet18"), sha256="0" * 64)
    with pytest.raises(ChecksumError, match="resnet18") as e:
        fetch_weights(spec)
    assert "0" * 64 in str(e.value)
    assert cached_path(spec) is None
    assert not list(cold_cache.rglob("blobs/*"))


def test_bytes_that_do_not_match_the_etag_are_rejected(zoo, hosted, hub, cold_cache):
    spec = dataclasses.replace(zoo.get("resnet18"), sha256=None)
    good = hosted["resnet18"].path.read_bytes()
    hub.serve_instead["test/resnet18"] = good[:-16] + b"\x01" * 16  # same size, other bytes
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        fetch_weights(spec)
    assert cached_path(spec) is None


@pytest.mark.parametrize("change, error, message", [
    ({"repo": "test/nope"}, NotFoundOnHubError, r"test/nope.*does not exist.*or it is private"),
    ({"revision": "f" * 40}, NotFoundOnHubError, r"revision does not exist"),
    ({"filename": "other.safetensors"}, NotFoundOnHubError, r"file does not exist"),
])
def test_not_found_errors_name_what_is_missing(zoo, hosted, cold_cache, change, error, message):
    with pytest.raises(error, match=message):
        fetch_weights(dataclasses.replace(zoo.get("resnet18"), **change))


def test_gated_repo(zoo, hosted, hub, cold_cache):
    hub.repos["test/resnet18"].gated = True
    with pytest.raises(GatedRepoError, match=r"gated.*HF_TOKEN"):
        fetch_weights(zoo.get("resnet18"))


def test_offline_mode(zoo, hosted, hub, cold_cache, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError, match=r"Offline mode is on \(HF_HUB_OFFLINE=1\)"):
        fetch_weights(zoo.get("resnet18"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    path = fetch_weights(zoo.get("resnet18"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.clear_log()
    assert fetch_weights(zoo.get("resnet18")) == path and hub.requests == []


def test_download_cut_off_midway_keeps_nothing_and_resumes(zoo, hosted, hub, cold_cache):
    spec = zoo.get("resnet18")
    hub.cut_after = hosted["resnet18"].size // 3
    with pytest.raises(WeightsUnavailableError, match=r"failed midway.*run it again"):
        fetch_weights(spec)
    assert cached_path(spec) is None
    hub.cut_after = None
    path = fetch_weights(spec)
    assert zhub.sha256_file(Path(path)) == hosted["resnet18"].sha256


def test_local_path_entries(zoo, hosted, tmp_path):
    from zoo.registry import ARCHITECTURES, ModelSpec

    f = hosted["resnet18"]
    spec = ModelSpec(name="mine", arch=ARCHITECTURES["resnet18"], path=str(f.path), sha256=f.sha256)
    assert fetch_weights(spec) == f.path
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        fetch_weights(dataclasses.replace(spec, path=str(tmp_path / "missing.safetensors")))
    with pytest.raises(ChecksumError, match="Check the file"):
        fetch_weights(dataclasses.replace(spec, sha256="1" * 64))
    assert f.path.exists()  # a user's own file is never deleted


def test_local_path_that_is_a_fifo_is_not_reported_missing(tmp_path):
    from zoo.registry import ARCHITECTURES, ModelSpec

    fifo = tmp_path / "weights.safetensors"
    os.mkfifo(fifo)
    spec = ModelSpec(name="mine", arch=ARCHITECTURES["resnet18"], path=str(fifo))
    with pytest.raises(WeightsUnavailableError, match=r"is a FIFO \(named pipe\), not a regular file") as e:
        fetch_weights(spec)  # returns at once: a FIFO is never opened
    assert "does not exist" not in str(e.value)
    assert cached_path(spec) is None


def test_download_progress_counts_bytes_up_to_the_file_size(zoo, hosted, cold_cache):
    # The tests run with HF_HUB_DISABLE_PROGRESS_BARS=1, as a server without a terminal does:
    # huggingface_hub's own bar is disabled and counts nothing.
    assert constants.HF_HUB_DISABLE_PROGRESS_BARS
    size = hosted["resnet18"].size
    seen: list[tuple[float | None, str]] = []
    fetch_weights(zoo.get("resnet18"), progress=lambda f, m: seen.append((f, m)))
    steps = [(f, m) for f, m in seen if m.startswith("Downloading resnet18:")]
    assert len(steps) >= 3, seen
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[0] < 0.5 and fractions[-1] == 1.0
    megabytes = [int(m.split(": ")[1].split(" / ")[0]) for _, m in steps]
    assert megabytes[0] < megabytes[-1] == round(size / 1e6)
    assert steps[-1][1] == f"Downloading resnet18: {size / 1e6:.0f} / {size / 1e6:.0f} MB"
