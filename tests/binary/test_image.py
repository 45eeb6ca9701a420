"""`./build.sh image`: the installer image as one multi-arch OCI index, byte-reproducible, holding only the file.

Built twice from the same files (as two builds of one commit would be): the archives must be the same bytes.
Then read as a registry client would: the index names amd64 and arm64; each manifest's config has that
architecture, the entrypoint and SOURCE_DATE_EPOCH as its time; its one layer holds exactly `/cni-suite`, owned
by root, mode 0755, with the bytes of that architecture's single file; and skopeo (what an operator pushes it
with) reads the archive.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.containerd.images import suite_image
from tests.helpers import paths
from tests.helpers.skip import skip_or_fail

ARCHES = ("amd64", "arm64")
NAME = "registry.example.com/cni-suite:0.1.0"
EPOCH = 1780000000


@pytest.fixture(scope="module")
def files() -> dict[str, Path]:
    found = {arch: paths.DIST_DIR / f"linux-{arch}" / "bridge" for arch in ARCHES}
    missing = [str(f) for f in found.values() if not f.is_file()]
    if missing or not shutil.which("buildah"):
        skip_or_fail(f"./build.sh image needs buildah and {', '.join(missing) or 'the files'} (run bash .ci/setup)")
    return found


def blob(archive: tarfile.TarFile, digest: str) -> bytes:
    member = archive.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
    assert member is not None
    data = member.read()
    assert hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:")
    return data


def test_the_image_is_reproducible_multi_arch_and_holds_only_the_file(files, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    first = suite_image(files, tmp_path / "one", NAME)
    second = suite_image(files, tmp_path / "two", NAME)
    assert first.read_bytes() == second.read_bytes()
    assert Path(f"{first}.sha256").read_text().split()[0] == hashlib.sha256(first.read_bytes()).hexdigest()

    with tarfile.open(first) as archive:
        assert sorted({m.mtime for m in archive.getmembers()}) == [EPOCH]
        index = json.loads(archive.extractfile("index.json").read())  # type: ignore[union-attr]
        (entry,) = index["manifests"]
        assert entry["annotations"] == {"org.opencontainers.image.ref.name": NAME, "io.containerd.image.name": NAME}
        image_index = json.loads(blob(archive, entry["digest"]))
        assert image_index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        platforms = {m["platform"]["architecture"]: m for m in image_index["manifests"]}
        assert sorted(platforms) == sorted(ARCHES) and {m["platform"]["os"] for m in platforms.values()} == {"linux"}
        for arch, descriptor in platforms.items():
            manifest = json.loads(blob(archive, descriptor["digest"]))
            config = json.loads(blob(archive, manifest["config"]["digest"]))
            assert config["architecture"] == arch
            assert config["config"]["Entrypoint"] == ["/cni-suite"]
            assert datetime.fromisoformat(config["created"].replace("Z", "+00:00")) == \
                datetime.fromtimestamp(EPOCH, timezone.utc)
            (layer,) = manifest["layers"]
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(archive, layer["digest"])))) as fs:
                members = [m for m in fs.getmembers() if m.name.strip("./")]
                assert [m.name.strip("./") for m in members] == ["cni-suite"]
                (single,) = members
                assert single.isfile()
                assert (single.mode & 0o7777, single.uid, single.gid, single.mtime) == (0o755, 0, 0, EPOCH)
                assert fs.extractfile(single).read() == files[arch].read_bytes()  # type: ignore[union-attr]

    if shutil.which("skopeo"):
        raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{first}"], check=True,
                             capture_output=True, text=True, timeout=60).stdout
        assert json.loads(raw)["manifests"] == image_index["manifests"]
