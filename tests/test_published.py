"""Published ImageNet-variant figures (zoo/published.py): registry data with a source, never invented."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from zoo.errors import ZooFileError
from zoo.published import BUILTIN, FIELDS, TIMM_COMMIT
from zoo.registry import Zoo, parse_zoo_file


def test_every_builtin_carries_its_figures_and_their_source():
    zoo = Zoo.load(None)
    for spec in zoo.builtin_depths:
        pub = spec.published
        assert pub is BUILTIN[spec.name] and TIMM_COMMIT in pub.source and f"{spec.name}.tv_in1k" in pub.source
        assert all(0 < getattr(pub, f) < 100 for f in FIELDS if f not in ("imagenet_a", "imagenet_c_mce"))
    # timm's ImageNet-A file has no resnet50.tv_in1k row: empty, and said so; mCE only where a paper gives it
    assert BUILTIN["resnet50"].imagenet_a is None and "no resnet50.tv_in1k row" in BUILTIN["resnet50"].notes
    assert BUILTIN["resnet50"].imagenet_c_mce == 76.7 and "Hendrycks" in BUILTIN["resnet50"].source
    assert [BUILTIN[n].imagenet_c_mce for n in ("resnet18", "resnet34", "resnet101", "resnet152")] == [None] * 4


@pytest.mark.skipif(not Path("/work/refs").is_dir(), reason="the lead's copy of timm's CSV rows")
def test_the_figures_are_the_rows_of_timms_results_files():
    from zoo.published import FILES

    for field, name in FILES.items():
        with open(Path("/work/refs") / name, newline="") as f:
            rows = {r["model"]: float(r["top1"]) for r in csv.DictReader(f)}
        for arch, pub in BUILTIN.items():
            assert getattr(pub, field) == rows.get(f"{arch}.tv_in1k"), (field, arch)


def test_a_custom_entry_may_carry_published_figures(tmp_path):
    path = tmp_path / "zoo.toml"
    path.write_text('[[model]]\nname = "mine"\narch = "resnet50"\nrepo = "me/mine"\n'
                    '[model.published]\nimagenet_v2 = 70.5\nimagenet_r = 40\nsource = "my paper, table 2"\n')
    (spec,) = parse_zoo_file(path)
    assert spec.published.imagenet_v2 == 70.5 and spec.published.imagenet_r == 40.0
    assert spec.published.imagenet_a is None and spec.published.source == "my paper, table 2"
    path.write_text('[[model]]\nname = "mine"\narch = "resnet50"\nrepo = "me/mine"\n'
                    '[model.published]\nimagenet_v2 = 70.5\n')
    with pytest.raises(ZooFileError, match="need a 'source'"):
        parse_zoo_file(path)
    path.write_text('[[model]]\nname = "mine"\narch = "resnet50"\nrepo = "me/mine"\n'
                    '[model.published]\nimagenet_v2 = 170.5\nsource = "x"\n')
    with pytest.raises(ZooFileError, match="must be a percentage"):
        parse_zoo_file(path)
