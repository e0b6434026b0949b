"""The figures in README.md and docs/ are what bench/results/*.json say (bench/figures.py).

A benchmark that writes new results, or a hand edit of a marked table, fails here until
`python -m bench figures` has rewritten the tables and both are committed together.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import figures

ROOT = Path(__file__).resolve().parent.parent


class TestCommitted:
    @pytest.mark.parametrize("name", figures.FILES)
    def test_every_marked_block_matches_the_committed_results(self, name):
        text = (ROOT / name).read_text()
        opened, closed = figures.OPENING.findall(text), figures.CLOSING.findall(text)
        assert len(opened) == len(closed) == len(figures.BLOCK.findall(text)) > 0
        _, changed = figures.rewrite(text)
        assert not changed, f"{name}: {changed} differ from bench/results: python -m bench figures"

    def test_every_block_is_in_the_docs(self):
        """A block whose markers were deleted would silently stop being checked."""
        used = [block for names in figures.used().values() for block in names]
        assert sorted(set(used)) == sorted(figures.BLOCKS)

    def test_the_command_checks_as_ci_would(self):
        done = subprocess.run([sys.executable, "-m", "bench", "figures", "--check"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


class TestRewrite:
    @pytest.fixture
    def results(self, tmp_path) -> Path:
        shutil.copytree(figures.RESULTS, tmp_path / "results")
        return tmp_path / "results"

    def edit(self, results: Path, name: str, change) -> None:
        data = json.loads((results / name).read_text())
        change(data)
        (results / name).write_text(json.dumps(data))

    @pytest.mark.parametrize(("file", "change", "shows"), [
        ("latest.json", lambda r: r["rss_mb"].update(master=91.2), "gunicorn master 91 MB"),
        ("wan.json", lambda r: r["runs"][0]["kinds"]["click_to_stop"].update(p50=71.5),
         "| 72 (1.16 x floor) |"),
        ("chaos.json", lambda r: r.update(duplicates=1), "| duplicate stops | 1 |"),
    ])
    def test_a_new_result_rewrites_the_blocks_that_show_it(self, results, file, change, shows):
        self.edit(results, file, change)
        texts = {name: (ROOT / name).read_text() for name in figures.FILES}
        out = {name: figures.rewrite(text, results) for name, text in texts.items()}
        changed = {block for _, names in out.values() for block in names}
        backed = {name for name, block in figures.BLOCKS.items() if block.results == file}
        assert changed and changed <= backed
        assert any(shows in text for text, _ in out.values())
        # Outside the markers nothing moves.
        for name, (text, _) in out.items():
            assert figures.BLOCK.sub("", text) == figures.BLOCK.sub("", texts[name])

    def test_an_unknown_block_is_an_error(self):
        with pytest.raises(KeyError, match="nope"):
            figures.rewrite("<!-- figures:nope -->\nx\n<!-- /figures -->\n")

    def test_a_rewritten_block_is_stable(self):
        text = "a\n\n<!-- figures:chaos-readme -->\nold\n<!-- /figures -->\n\nb\n"
        once, changed = figures.rewrite(text)
        assert changed == ["chaos-readme"] and figures.rewrite(once) == (once, [])
        assert once.startswith("a\n\n<!-- figures:chaos-readme -->\n\n| | |\n")
        assert once.endswith("\n\n<!-- /figures -->\n\nb\n")
