"""Issue 17, item 14: what the README says about the page and the methods is what the code does."""

from __future__ import annotations

import re


def test_the_readme_lists_every_tab(repo_root):
    from ui.app import TABS

    text = (repo_root / "README.md").read_text()
    listed = text[text.index("\nTabs:\n"):]
    listed = listed[: listed.index("\n\n", listed.index("* "))]
    names = re.findall(r"^\* \*\*(.+?)\*\*", listed, flags=re.M)
    assert names == [t.TITLE for t in TABS], names


def test_the_readme_gives_integrated_gradients_steps_as_the_code_does(repo_root):
    from ui.tabs.classify import IG_STEPS
    from zoo.explain import IG_DEFAULTS

    text = (repo_root / "README.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `integrated-gradients` |"))
    # One default everywhere (zoo.explain.IG_STEPS: the page's slider, the API, the CLI).
    assert f"default {IG_DEFAULTS['steps']}," in row and IG_STEPS.default == IG_DEFAULTS["steps"], row
