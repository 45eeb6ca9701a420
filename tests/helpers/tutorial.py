"""Run the tutorial's command blocks in order, as a reader would in one terminal, and check their key lines.

The convention, written into docs/tutorial/*.md (and explained in docs/tutorial/README.md):

    ```sh run              a block the runner executes (in ONE bash process, so `export`s carry on)
    ```text output         right after a run block: its real output, as a reader sees it (refreshed by --update)
    <!-- expect: TEXT -->  after a run block (or its output): TEXT must appear in that block's output
    <!-- expect-not: TEXT --> ... and this must not
    ```sh cleanup          always executed at the end (also after a failure, and once before starting)

Matching collapses runs of white space, so a key line survives re-indented JSON; expectations name only what is
stable (addresses, names, rule names, error codes), never MACs, veth names or timings.

    .venv/bin/python -m tests.helpers.tutorial docs/tutorial/en.md            # run and check (as root)
    .venv/bin/python -m tests.helpers.tutorial --update docs/tutorial/en.md   # ... and rewrite the outputs

The SVG pictures the tutorial draws with inspect land in <the run's folder>/img and are copied to
docs/tutorial/img when they differ from the committed ones by more than the random veth names.

The pages name everything they make ``cnt-tut...`` (namespaces ``cnt-tut-host``, ``cnt-tut-c1``..., the folder
``/tmp/cnt-tut``). Each run renames them with a random tag (:class:`Renaming`: ``cnt-tut-c1`` becomes
``cnt-tut3fa1-c1``, ``/tmp/cnt-tut`` ``/tmp/cnt-tut3fa1``) in the code it runs, in the expectations and,
backwards, in the outputs and pictures it writes: two runs on one machine (two suite runs, or a reader's
terminal beside CI) never share a namespace or a folder, and the pages keep their plain names.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tests.helpers.paths import REPO

#: What the pages call their namespaces and folder (``/tmp/cnt-tut``); a run uses :meth:`Renaming.forward` of it.
DOC_NAME = "cnt-tut"
IMG_DIR = REPO / "docs" / "tutorial" / "img"
BLOCK_TIMEOUT = 180.0  # a safety net for a hung command, not a timing
_FENCE = re.compile(r"^```(\S*)\s*(.*?)\s*$")
_EXPECT = re.compile(r"^<!--\s*expect(-not)?:\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    kind: str  # "run" or "cleanup"
    code: str
    line: int  # 1-based line of the opening fence
    output_span: Optional[tuple[int, int]] = None  # lines (0-based, exclusive end) of the output block's body
    expect: list[str] = field(default_factory=list)
    expect_not: list[str] = field(default_factory=list)


def parse(text: str) -> list[Block]:
    """The run and cleanup blocks of a Markdown document, each with its output block and expectations."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m and m[1]:
            start = i
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                i += 1
            body = lines[start + 1:i]
            info = m[2].split()
            if m[1] == "sh" and info[:1] in (["run"], ["cleanup"]):
                blocks.append(Block(info[0], "\n".join(body) + "\n", start + 1))
            elif m[1] == "text" and info[:1] == ["output"] and blocks and blocks[-1].output_span is None \
                    and _only_blank_between(lines, blocks[-1], start):
                blocks[-1].output_span = (start + 1, i)
        else:
            e = _EXPECT.match(lines[i])
            if e and blocks:
                (blocks[-1].expect_not if e[1] else blocks[-1].expect).append(e[2])
        i += 1
    return blocks


def _only_blank_between(lines: list[str], block: Block, start: int) -> bool:
    """An output block belongs to the run block just above it (only blank lines between)."""
    end = block.line + block.code.count("\n")  # the closing fence of the run block
    return all(not line.strip() for line in lines[end + 1:start])


@dataclass(frozen=True)
class Renaming:
    """One run's names: the pages' ``cnt-tut`` with ``tag`` appended, everywhere it occurs."""

    tag: str = field(default_factory=lambda: secrets.token_hex(2))

    def forward(self, text: str) -> str:
        """The pages' names -> this run's (code to run, expectations)."""
        return text.replace(DOC_NAME, DOC_NAME + self.tag)

    def back(self, text: str) -> str:
        """This run's names -> the pages' (outputs and pictures written back into docs/)."""
        return text.replace(DOC_NAME + self.tag, DOC_NAME)

    @property
    def tmp(self) -> Path:
        """The run's folder (the pages' ``/tmp/cnt-tut``)."""
        return Path("/tmp") / self.forward(DOC_NAME)

    @property
    def netns_prefix(self) -> str:
        """Every namespace the run makes starts with this."""
        return self.forward(DOC_NAME) + "-"


def _squash(text: str) -> str:
    return " ".join(text.split())


class Shell:
    """One bash, fed block after block; a marker line with the exit status ends each block's output."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(["bash", "--norc", "--noprofile"], cwd=REPO, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, code: str) -> tuple[int, str]:
        marker = f"__tutorial_done_{secrets.token_hex(4)}"
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{code}\nprintf '\\n{marker} %d\\n' $?\n")
        self.proc.stdin.flush()
        out: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=BLOCK_TIMEOUT)
            except queue.Empty:
                raise TimeoutError(f"no end after {BLOCK_TIMEOUT:.0f} s; output so far:\n{''.join(out)}") from None
            if line is None:
                raise RuntimeError(f"the shell ended; output:\n{''.join(out)}")
            if line.startswith(marker):
                text = "".join(out)
                return int(line.split()[1]), text[:-1] if text.endswith("\n") else text
            out.append(line)

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def shell_env() -> dict[str, str]:
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
            "LANG": "C.UTF-8", "TERM": "dumb"}


#: What differs between two runs of the same page: host veth names, and cnitool's container IDs (a hash of the
#: netns path, which holds the run's tag).
_RANDOM_NAME = re.compile(r"(veth)[0-9a-f]{8}|(cnitool-)[0-9a-f]{12}")


def same_picture(new: str, old: Path) -> bool:
    """Equal but for random names: the committed picture is kept (no churn on every run)."""
    def plain(text: str) -> str:
        return _RANDOM_NAME.sub(r"\1\2", text)

    try:
        return plain(new) == plain(old.read_text())
    except FileNotFoundError:
        return False


def _keep_pictures(names: Renaming) -> None:
    """Copy the pictures the run drew into docs/tutorial/img, with the pages' names, when they changed."""
    IMG_DIR.mkdir(parents=True, exist_ok=True)
    for svg in sorted((names.tmp / "img").glob("*.svg")):
        drawn = names.back(svg.read_text())
        if not same_picture(drawn, IMG_DIR / svg.name):
            (IMG_DIR / svg.name).write_text(drawn)


def cleanup(blocks: list[Block], names: Renaming) -> None:
    for block in blocks:
        if block.kind == "cleanup":
            subprocess.run(["bash", "-c", names.forward(block.code)], cwd=REPO, env=shell_env(), capture_output=True,
                           timeout=BLOCK_TIMEOUT)


def run_tutorial(path: Path, *, update: bool = False, names: Optional[Renaming] = None) -> list[str]:
    """Run every block of ``path`` under ``names`` (a fresh tag by default); returns the failures (empty: all
    good). Cleans up whatever happens."""
    names = names or Renaming()
    text = path.read_text()
    blocks = parse(text)
    failures: list[str] = []
    outputs: dict[int, str] = {}
    cleanup(blocks, names)
    shell = Shell(shell_env())
    try:
        for block in (b for b in blocks if b.kind == "run"):
            status, out = shell.run(names.forward(block.code))
            outputs[block.line] = names.back(out)
            where = f"{path.name}:{block.line}"
            if status != 0:
                failures.append(f"{where}: exit status {status}\n{block.code}{out}")
                break
            squashed = _squash(out)
            failures += [f"{where}: expected {e!r} in:\n{out}" for e in block.expect
                         if _squash(names.forward(e)) not in squashed]
            failures += [f"{where}: did not expect {e!r} in:\n{out}" for e in block.expect_not
                         if _squash(names.forward(e)) in squashed]
        if not failures and (names.tmp / "img").is_dir():
            _keep_pictures(names)
    finally:
        shell.close()
        cleanup(blocks, names)
    if update and not failures:
        path.write_text(with_outputs(text, blocks, outputs))
    return failures


def with_outputs(text: str, blocks: list[Block], outputs: dict[int, str]) -> str:
    """``text`` with each run block's output block replaced by what it printed this time."""
    lines = text.splitlines()
    for block in sorted(blocks, key=lambda b: -b.line):
        if block.output_span and block.line in outputs:
            start, end = block.output_span
            lines[start:end] = [line.rstrip() for line in outputs[block.line].splitlines()] or ["(no output)"]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.helpers.tutorial", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--update", action="store_true", help="rewrite each output block with the real output")
    opts = parser.parse_args(argv)
    status = 0
    for path in opts.files:
        failures = run_tutorial(path, update=opts.update)
        print(f"{path}: {'ok' if not failures else 'FAILED'}")
        for failure in failures:
            print(failure, file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
