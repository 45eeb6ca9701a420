"""A second, different build of the single file, made in a second from the first (no PyInstaller run).

Upgrade tests need two builds with different bytes and different build hashes (so the launcher unpacks each into
a cache folder of its own), as a real upgrade has. The launcher is the file's head (up to the payload offset in
the trailer); the bundle folder is what the file unpacks; a tag file added to that folder changes the payload
and so the hash. `cni_common.bundle.pack` then writes the file exactly as build.sh does.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

from cni_common.bundle import pack, trailer
from tests.helpers.paths import OUR_PLUGINS


def build_hash(path: Path) -> str:
    return trailer.build_hash(str(path))


def unpack(single_file: Path, workdir: Path) -> Path:
    """The bundle folder `single_file` unpacks into (its launcher does it, into a cache under `workdir`)."""
    cache = workdir / "cache"
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    runner = workdir / "cni-suite"  # a name that is no plugin: the program prints its usage after unpacking
    shutil.copy2(single_file, runner)
    subprocess.run([str(runner)], env={"CNI_SUITE_CACHE_DIR": str(cache), "PATH": os.defpath},
                   capture_output=True, timeout=60)
    runner.unlink()
    return cache / build_hash(single_file)


def repack(single_file: Path, dest: Path, tag: str, workdir: Path) -> Path:
    """Write at `dest` a build equal to `single_file` plus a file `build-tag.txt` holding `tag`."""
    data = single_file.read_bytes()
    offset = struct.unpack("<Q", data[-trailer.SIZE + 8:-trailer.SIZE + 16])[0]
    workdir.mkdir(parents=True, exist_ok=True)
    launcher = workdir / "launcher"
    launcher.write_bytes(data[:offset])
    bundle = workdir / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(unpack(single_file, workdir), bundle, symlinks=True, ignore=shutil.ignore_patterns(".in-use"))
    (bundle / "build-tag.txt").write_text(tag + "\n")
    pack.pack(launcher, bundle, dest, list(OUR_PLUGINS))
    shutil.rmtree(workdir / "cache", ignore_errors=True)
    shutil.rmtree(bundle, ignore_errors=True)
    return dest


def two_builds(base: Path, single_file: Path) -> tuple[Path, Path]:
    """`base/a/cni-suite` (a copy of `single_file`) and `base/b/cni-suite` (a repacked, different build).

    Named `cni-suite`, the name under which the file runs its non-plugin modes (`cni-suite install`).
    """
    first = base / "a" / "cni-suite"
    first.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(single_file, first)
    second = base / "b" / "cni-suite"
    second.parent.mkdir(parents=True, exist_ok=True)
    repack(first, second, "second build", base / "work")
    return first, second
