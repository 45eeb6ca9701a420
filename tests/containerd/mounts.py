"""Run a command in a private mount namespace with test folders over fixed paths.

Some paths are hard-wired in the Go code we drive: `ctr run --cni` reads
/etc/cni/net.d and /usr/lib/cni (go-cni defaults, Debian-patched), and both
ctr and containerd 1.6 keep libcni's result cache in /var/lib/cni (no setting).
Rather than writing there on the machine, the command runs under
`unshare --mount --propagation slave` with the test folders bind-mounted on
those paths; a path that doesn't exist (/etc/cni here) is made visible by an
overlay of its nearest existing parent whose upper layer (a temp folder)
holds the missing directories. Mounts made inside vanish with the namespace.
"""

from __future__ import annotations

import shlex
from pathlib import Path


def private_mounts_argv(argv: list[str], binds: dict[str, Path], workdir: Path) -> list[str]:
    """`argv` wrapped so that each `binds` target shows its source folder, privately."""
    steps: list[str] = []
    overlaid: set[Path] = set()
    for target_str, source in binds.items():
        target = Path(target_str)
        if not target.exists():
            parent = next(p for p in target.parents if p.exists())
            if parent == Path("/"):
                raise ValueError(f"refusing to overlay / to create {target}")
            upper = workdir / "overlay" / str(parent).strip("/").replace("/", "_")
            (upper / "upper" / target.relative_to(parent)).mkdir(parents=True, exist_ok=True)
            (upper / "work").mkdir(parents=True, exist_ok=True)
            if parent not in overlaid:
                overlaid.add(parent)
                opts = f"lowerdir={parent},upperdir={upper / 'upper'},workdir={upper / 'work'}"
                steps.append(f"mount -t overlay cnt-overlay -o {shlex.quote(opts)} {shlex.quote(str(parent))}")
        steps.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(str(target))}")
    script = "set -e; " + "; ".join(steps) + '; exec "$@"'
    return ["unshare", "--mount", "--propagation", "slave", "--", "sh", "-c", script, "sh", *argv]
