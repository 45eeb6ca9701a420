"""`cni-suite install` usage errors: exit 2, one line naming the option (argparse's), nothing done."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("args, message", [
    (["--plugins", "bridge,frobnicate"], "--plugins: frobnicate"),
    (["--conflist-name", "../x.conflist"], "--conflist-name"),
    (["--remove-binaries"], "--remove-binaries goes with --uninstall"),
    (["--remove-config-on-exit"], "--remove-config-on-exit goes with --watch"),
    (["--check"], "--check needs --conflist"),
    (["--check", "--conflist", "x", "--watch"], "--check goes alone"),
    (["--uninstall", "--watch", "--remove-config-on-exit"], "does not go with --uninstall"),
    (["--pod-cidr-from-api"], "--pod-cidr-from-api goes with --conflist"),
    (["--pod-cidr-from-api", "--conflist", "x", "--uninstall"], "--pod-cidr-from-api goes with --conflist"),
    (["--warm", "yes"], "argument --warm: invalid choice: 'yes' (choose from 'off', 'on', 'auto')"),
    (["--warm", ""], "argument --warm: invalid choice"),
    (["--warm", "on", "--uninstall"], "--warm goes with an install"),
    (["--warm", "on", "--check", "--conflist", "x"], "--warm goes with an install"),
    (["--cache-dir", "/x"], "--cache-dir goes with --warm or --uninstall --remove-binaries"),
    (["--cache-dir", "/x", "--uninstall"], "--cache-dir goes with --warm or --uninstall --remove-binaries"),
])
def test_usage_errors_exit_2(args, message, capsys):
    from plugins.install import main

    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_the_api_and_a_node_subnets_file_are_not_both_a_source(capsys):
    from plugins.install import main

    with pytest.raises(SystemExit) as exc:
        main(["--pod-cidr-from-api", "--node-subnets", "x", "--conflist", "y"])
    assert exc.value.code == 2 and "choose one" in capsys.readouterr().err
