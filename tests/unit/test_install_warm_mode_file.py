"""`cni-suite install --warm`: the warm-mode file in a launcher cache folder (a test folder, never the node's).

The folder is checked as the launcher checks it (a symlink, someone else's or a group/other-writable folder is
refused, with nothing written), a 0755 one is made 0700, and the file appears whole by rename."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plugins import install_warm
from plugins.install_files import InstallError


def test_an_absent_folder_is_created_as_the_launcher_creates_it(tmp_path: Path):
    cache = tmp_path / "cni-suite"
    assert install_warm.write_mode(str(cache), "off")
    assert cache.stat().st_mode & 0o7777 == 0o700 and cache.stat().st_uid == os.geteuid()
    text = (cache / "warm-mode").read_text()
    assert text.split()[0] == "off" and install_warm.MARK in text.splitlines()
    assert text.encode()[:15].startswith(b"off\n")  # the launcher reads 15 bytes, the warm process 16
    assert (cache / "warm-mode").stat().st_mode & 0o7777 == 0o644
    assert sorted(p.name for p in cache.iterdir()) == ["warm-mode"]  # no temporary file left


def test_a_missing_parent_is_an_error_naming_the_folder(tmp_path: Path):
    with pytest.raises(InstallError, match=f"{tmp_path}/absent/cni-suite: no such file or directory"):
        install_warm.write_mode(str(tmp_path / "absent" / "cni-suite"), "on")


def test_a_0755_folder_is_made_private(tmp_path: Path):
    """What a hostPath volume of type DirectoryOrCreate makes: root's, 0755."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)
    cache.chmod(0o755)
    install_warm.write_mode(str(cache), "auto")
    assert cache.stat().st_mode & 0o7777 == 0o700
    assert (cache / "warm-mode").read_text().split()[0] == "auto"


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777])
def test_a_folder_others_can_write_is_refused(tmp_path: Path, mode: int):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(mode)
    with pytest.raises(InstallError, match="writable by others"):
        install_warm.write_mode(str(cache), "on")
    assert list(cache.iterdir()) == [] and cache.stat().st_mode & 0o7777 == mode


def test_someone_elses_folder_is_refused(tmp_path: Path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    os.chown(cache, 65534, 65534)
    with pytest.raises(InstallError, match="belongs to uid 65534"):
        install_warm.write_mode(str(cache), "on")
    assert list(cache.iterdir()) == []


def test_a_symlinked_folder_is_refused_and_not_followed(tmp_path: Path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "cache").symlink_to(target)
    with pytest.raises(InstallError, match="symlink or not a directory"):
        install_warm.write_mode(str(tmp_path / "cache"), "on")
    assert list(target.iterdir()) == []


def test_a_file_in_place_of_the_folder_is_refused(tmp_path: Path):
    (tmp_path / "cache").write_text("")
    with pytest.raises(InstallError, match="symlink or not a directory"):
        install_warm.write_mode(str(tmp_path / "cache"), "on")


def test_a_symlink_at_the_file_is_replaced_not_followed(tmp_path: Path):
    cache, victim = tmp_path / "cache", tmp_path / "victim"
    cache.mkdir(mode=0o700)
    victim.write_text("precious\n")
    (cache / "warm-mode").symlink_to(victim)
    install_warm.write_mode(str(cache), "on")
    assert victim.read_text() == "precious\n"
    assert not (cache / "warm-mode").is_symlink() and (cache / "warm-mode").read_text().startswith("on\n")


def test_the_file_appears_by_rename_and_only_when_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A launcher reading meanwhile sees the old word or the new one: the file is a new inode, written and
    fsync'd under a temporary name first; the same word again writes nothing."""
    cache = tmp_path / "cache"
    install_warm.write_mode(str(cache), "on")
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    with open(cache / "warm-mode", "rb") as held:  # a reader holding the old file
        assert install_warm.write_mode(str(cache), "off")
        assert held.read().startswith(b"on\n")  # the old file was never written in place
    assert len(synced) == 2  # the file before its rename, the folder after it
    inode = (cache / "warm-mode").stat().st_ino
    assert not install_warm.write_mode(str(cache), "off")
    assert (cache / "warm-mode").stat().st_ino == inode


def test_leftovers_of_a_killed_installer_go_and_the_launchers_files_stay(tmp_path: Path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    (cache / ".cni-suite-dead.tmp").write_text("of")
    (cache / ".tmp-abc123").mkdir()  # a launcher's unpack in progress: not ours
    (cache / ("a" * 64)).mkdir()  # a build folder
    install_warm.write_mode(str(cache), "on")
    assert sorted(p.name for p in cache.iterdir()) == sorted([".tmp-abc123", "a" * 64, "warm-mode"])


def test_remove_takes_only_the_installers_own_file(tmp_path: Path):
    cache = tmp_path / "cache"
    assert not install_warm.remove_mode(str(cache))  # no folder: nothing to do, nothing created
    assert not cache.exists()
    install_warm.write_mode(str(cache), "on")
    assert install_warm.remove_mode(str(cache)) and not (cache / "warm-mode").exists()
    (cache / "warm-mode").write_text("off\n")  # an operator's, by hand
    assert not install_warm.remove_mode(str(cache)) and (cache / "warm-mode").read_text() == "off\n"


def test_the_watch_fingerprint_sees_a_replaced_or_removed_file(tmp_path: Path):
    cache = tmp_path / "cache"
    install_warm.write_mode(str(cache), "on")
    before = install_warm.fingerprint(str(cache))
    (cache / "warm-mode").unlink()
    assert install_warm.fingerprint(str(cache)) is None
    (cache / "warm-mode").write_text("off\n")
    assert install_warm.fingerprint(str(cache)) not in (None, before)


def test_uninstall_leaves_a_folder_it_would_refuse_and_still_succeeds(tmp_path: Path,
                                                                    capfd: pytest.CaptureFixture[str]):
    """Removing the suite is about its config and files: a cache folder the launcher refuses is not acted on."""
    from plugins.install import main

    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    (cache / "warm-mode").write_text(install_warm.content("on").decode())
    assert main(["--uninstall", "--remove-binaries", "--bin-dir", str(tmp_path / "bin"), "--conf-dir",
                 str(tmp_path / "net.d"), "--cache-dir", str(cache)]) == 0
    assert (cache / "warm-mode").exists() and cache.stat().st_mode & 0o777 == 0o777
    assert "writable by others (mode 0777): refused" in capfd.readouterr().err
