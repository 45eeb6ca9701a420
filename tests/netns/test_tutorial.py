"""docs/tutorial/{en,ko}.md run end to end (every `sh run` block in order, key lines checked, cleanup always),
and the two languages keep the same steps and the same commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import tutorial
from tests.helpers.netns import list_netns
from tests.helpers.paths import REPO

DOCS = REPO / "docs" / "tutorial"


def _commands(path: Path) -> list[str]:
    """The run and cleanup blocks without comments (the Korean page may translate them)."""
    return [re.sub(r"\s+#.*$", "", b.code, flags=re.M) for b in tutorial.parse(path.read_text())]


def test_both_languages_have_the_same_steps_and_commands() -> None:
    en, ko = (DOCS / "en.md").read_text(), (DOCS / "ko.md").read_text()
    assert len(re.findall(r"^## [1-7]단계\.", ko, re.M)) == 7
    assert len(re.findall(r"^## Step [1-7]\.", en, re.M)) == 7
    assert _commands(DOCS / "en.md") == _commands(DOCS / "ko.md")
    for picture in re.findall(r"\]\((img/[^)]+\.svg)\)", en):
        assert (DOCS / picture).is_file() and picture in ko


@pytest.mark.parametrize("language", ["en", "ko"])
def test_tutorial_runs(language: str, plugin_dir: Path, cnitool_bin: Path) -> None:
    names = tutorial.Renaming()  # this run's own names: another suite run on the machine uses other ones
    failures = tutorial.run_tutorial(DOCS / f"{language}.md", names=names)
    assert not failures, "\n\n".join(failures)
    assert not [ns.name for ns in list_netns() if ns.name.startswith(names.netns_prefix)]
    assert not names.tmp.exists()
