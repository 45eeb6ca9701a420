"""The installer image's OCI archive: an OCI image layout (as buildah writes it) packed the same way every time.

``buildah manifest push ... oci-archive:`` gives the same blobs and index on every build of the same inputs
(``--timestamp`` fixes the times inside the image), but its tar carries the build's file times, so two builds
differ as files. This packs the layout (``oci-layout``, ``index.json``, ``blobs/sha256/*``) itself: sorted
names, owner root, mode 0644/0755, every time ``SOURCE_DATE_EPOCH``. It also names the image for containerd:
``ctr images import`` takes the name from the index's ``io.containerd.image.name`` annotation (podman and
skopeo read ``org.opencontainers.image.ref.name``, which buildah wrote), so an air-gapped node can import the
archive as the name the manifests use.

Usage: ``python -m cni_common.bundle.oci_archive LAYOUT_DIR IMAGE_NAME OUT.tar`` (also writes ``OUT.tar.sha256``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path

from cni_common.bundle.release import tar_entry


def named_index(index: bytes, image: str) -> bytes:
    """``index.json`` with ``image`` as the containerd name of its one entry (the multi-arch index)."""
    data = json.loads(index)
    for entry in data["manifests"]:
        entry.setdefault("annotations", {})["io.containerd.image.name"] = image
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def pack(layout: Path, image: str, out: Path, mtime: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for folder in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            info.uname = info.gname = ""
            tar.addfile(info)
        for blob in sorted((layout / "blobs" / "sha256").iterdir()):
            tar_entry(tar, f"blobs/sha256/{blob.name}", blob.read_bytes(), 0o644, mtime)
        tar_entry(tar, "index.json", named_index((layout / "index.json").read_bytes(), image), 0o644, mtime)
        tar_entry(tar, "oci-layout", (layout / "oci-layout").read_bytes(), 0o644, mtime)
    data = raw.getvalue()
    out.write_bytes(data)
    Path(f"{out}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {out.name}\n")
    return data


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.stderr.write("usage: python -m cni_common.bundle.oci_archive LAYOUT_DIR IMAGE_NAME OUT.tar\n")
        sys.exit(2)
    pack(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    print(sys.argv[3])
