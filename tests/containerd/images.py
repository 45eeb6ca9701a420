"""A busybox-static root filesystem and a one-layer OCI image built from it.

No registry is reachable, so containers run from a rootfs folder (`ctr run
--rootfs`) and the CRI sandbox ("pause") image is an OCI layout archive made
here and imported with `ctr images import`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = Path("/usr/bin/busybox")  # Debian busybox-static: no shared libraries needed
#: Sandbox image name. It must be fully qualified: CRI normalises a bare
#: "pause:1" to docker.io/library/pause:1 and then looks for that name.
SANDBOX_IMAGE = "cnt.test/cnt-pause:1"


def busybox_rootfs(dest: Path) -> Path:
    """Make `dest` a minimal rootfs: /bin/busybox plus a symlink per applet."""
    bin_dir = dest / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("proc", "sys", "dev", "etc", "tmp", "run", "var"):
        (dest / sub).mkdir(exist_ok=True)
    shutil.copy2(BUSYBOX, bin_dir / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        link = bin_dir / applet
        if applet != "busybox" and not link.is_symlink():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    return dest


def _blob(blobs: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (blobs / digest.split(":")[1]).write_bytes(data)
    return digest, len(data)


def oci_image_archive(rootfs: Path, dest: Path, ref: str = SANDBOX_IMAGE,
                      entrypoint: tuple[str, ...] = ("/bin/sleep", "infinity")) -> Path:
    """Write an OCI image-layout tar at `dest` holding `rootfs` as one layer, named `ref`.

    The `io.containerd.image.name` annotation in index.json is what makes
    `ctr images import` register the image under `ref` (no pull ever happens).
    """
    layout = dest.with_suffix(".layout")
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    layer_path = layout / "layer.tar"
    with tarfile.open(layer_path, "w") as tar:
        for entry in sorted(os.listdir(rootfs)):
            tar.add(rootfs / entry, arcname=entry)
    layer_digest, layer_size = _blob(blobs, layer_path.read_bytes())
    layer_path.unlink()
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": list(entrypoint), "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    config_digest, config_size = _blob(blobs, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                    "size": layer_size}],
    }
    manifest_digest, manifest_size = _blob(blobs, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": manifest_size, "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1]},
    }]}
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    with tarfile.open(dest, "w") as tar:
        for entry in ("oci-layout", "index.json", "blobs"):
            tar.add(layout / entry, arcname=entry)
    shutil.rmtree(layout)
    return dest


#: Image names of the installer, one per build (fully qualified, as SANDBOX_IMAGE).
INSTALLER_IMAGE = "cnt.test/cnt-cni-suite:{tag}"
REPO = Path(__file__).resolve().parents[2]


def suite_image(files: dict[str, Path], folder: Path, name: str) -> Path:
    """The installer image of the given single files ({arch: file}), made by ``./build.sh image`` (buildah, the
    Containerfile in conf-examples/kubernetes/) as an operator makes it; returns its OCI archive."""
    for arch, single_file in files.items():
        (folder / f"linux-{arch}").mkdir(parents=True, exist_ok=True)
        shutil.copy2(single_file, folder / f"linux-{arch}" / "bridge")
    arches = [word for arch in files for word in ("--arch", arch)]
    subprocess.run([str(REPO / "build.sh"), *arches, "image"], check=True, capture_output=True, timeout=600,
                   env={**os.environ, "IMAGE": name, "IMAGE_DIST": str(folder)})
    (archive,) = folder.glob("cni-suite-image-v*.tar")
    return archive
