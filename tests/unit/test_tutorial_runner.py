"""The tutorial runner's reading of the Markdown marks (docs/tutorial/README.md) and its --update rewrite."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import tutorial

DOC = """# t

```sh run
echo one
```
```text output
old
```
<!-- expect: one -->
<!-- expect-not: two -->

```sh
echo shown only
```

```sh run
echo three
```
A paragraph.
```text output
not this block's: text between
```

```sh cleanup
rm -rf /tmp/cnt-tut
```
"""


def test_blocks_outputs_and_expectations() -> None:
    blocks = tutorial.parse(DOC)
    assert [(b.kind, b.code) for b in blocks] == [("run", "echo one\n"), ("run", "echo three\n"),
                                                  ("cleanup", "rm -rf /tmp/cnt-tut\n")]
    first, second, _ = blocks
    assert (first.expect, first.expect_not) == (["one"], ["two"])
    assert first.output_span == (6, 7) and second.output_span is None


def test_update_rewrites_only_the_output_blocks() -> None:
    blocks = tutorial.parse(DOC)
    text = tutorial.with_outputs(DOC, blocks, {blocks[0].line: "one  \n", blocks[1].line: "three"})
    assert text == DOC.replace("```text output\nold\n```", "```text output\none\n```")


def test_matching_ignores_white_space() -> None:
    assert tutorial._squash('"code": 7') in tutorial._squash('{\n    "code":   7,\n}')


def test_each_run_renames_the_pages_names_and_writes_them_back_plain() -> None:
    one, two = tutorial.Renaming("a1b2"), tutorial.Renaming()
    code = "ip netns add cnt-tut-c1\nexport T=/tmp/cnt-tut\nip -n cnt-tut-host link add cnttut0 type bridge\n"
    assert one.forward(code) == ("ip netns add cnt-tuta1b2-c1\nexport T=/tmp/cnt-tuta1b2\n"
                                 "ip -n cnt-tuta1b2-host link add cnttut0 type bridge\n")  # link names: per netns
    assert one.back(one.forward(code)) == code
    assert (one.tmp, one.netns_prefix) == (Path("/tmp/cnt-tuta1b2"), "cnt-tuta1b2-")
    assert two.netns_prefix == f"cnt-tut{two.tag}-" and len(two.tag) == 4  # a fresh tag per run
    cleanup = tutorial.parse(DOC)[-1].code
    assert one.forward(cleanup) == "rm -rf /tmp/cnt-tuta1b2\n"  # a run's cleanup leaves other runs' alone
