#!/bin/bash
# Build the suite's plugins as portable single-file executables, one per CNI type, and the release tarballs.
#
#   ./build.sh                     build every architecture in ARCHES (below) into dist/
#   ./build.sh --arch amd64        build only that architecture (repeat --arch for several)
#   ./build.sh install DIR         build if needed, then install the build machine's files into DIR atomically
#   ./build.sh --arch arm64 install DIR   the same with that architecture's files (e.g. a root for another node)
#   ./build.sh image               build if needed, then the installer image of every architecture in ARCHES (or
#                                  --arch): dist/cni-suite-image-v<version>.tar, one multi-arch OCI index
#
# dist/ afterwards (docs/packaging.md):
#   dist/linux-<arch>/<type>                                     the files of each architecture, one per type
#   dist/cni-plugins-linux-<arch>-v<version>.tgz{,.sha256,.sha512} the release artifacts, as upstream names them
#   dist/<type>                                                  the build machine's architecture (tests, bench)
#   dist/cni-suite-image-v<version>.tar{,.sha256}                 ./build.sh image: the image (an OCI archive)
#
# All types are one multi-call program (plugins/multicall.py picks the plugin from the name it runs as),
# frozen once by PyInstaller as a tuned one-folder bundle (cni_common/bundle/cni-suite.spec). Per architecture,
# the bundle gets its runner (cni_common/bundle/runner.c: the static interpreter), the dynamic loader and C
# library it was linked against (cni_common/bundle/clibs.py), and is packed behind a statically linked launcher
# (cni_common/bundle/launcher.c) into ONE file that needs nothing from the node but the kernel. On its first
# run the file unpacks the bundle into a root-only cache keyed by its hash; later runs only exec it.
#
# Reproducible: two builds of the same commit give byte-identical files and tarballs. SOURCE_DATE_EPOCH (default:
# the commit's time) is the only time that enters them, and no path of the build machine is inside.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-.venv/bin/python}
# The suite's one table of CNI types (plugins/multicall.py), read with the Python that builds.
# (`|| true`: read fails on empty input, and set -e would then exit silently before the message below.)
read -r -a PLUGIN_TYPES < <("$PYTHON" -c 'from plugins.multicall import PLUGINS; print(*PLUGINS)') || true
if ((${#PLUGIN_TYPES[@]} == 0)); then
    echo "build.sh: cannot read the plugin types from plugins/multicall.py with $PYTHON (run bash .ci/setup)" >&2
    exit 1
fi
# Every architecture a plain ./build.sh builds. Each needs a branch in arch_config (and, when it is not the build
# machine's, in retarget_bundle).
ARCHES=(amd64 arm64)
NATIVE_ARCH=$(dpkg --print-architecture)
WORK=build/pyinstaller

# arch_config ARCH: the toolchain and target files of one architecture, as variables the steps below read:
#   CC STRIP        compiler (also the linker) and strip for the target
#   TRIPLET         Debian's multiarch name (x86_64-linux-gnu); the target's libraries are in /lib/$TRIPLET
#                   and /usr/lib/$TRIPLET (the C library the bundle carries is taken from there)
#   PY_STATIC_LIB PY_INCLUDE PY_LIBS   the target's static libpython, its headers, the libraries it needs
arch_config() {
    case $1 in
        amd64) TRIPLET=x86_64-linux-gnu ;;
        arm64) TRIPLET=aarch64-linux-gnu ;;
        *)
            echo "build.sh: unknown architecture '$1' (known: ${ARCHES[*]})" >&2
            exit 2 ;;
    esac
    # Another architecture is cross-built with Debian's cross toolchain for it (gcc-aarch64-linux-gnu...) and
    # its :arch packages, installed by .ci/setup beside the build machine's (multiarch; docs/packaging.md).
    if [ "$1" = "$NATIVE_ARCH" ]; then
        CC=gcc STRIP=strip
    else
        CC=$TRIPLET-gcc STRIP=$TRIPLET-strip
    fi
    # The target's build settings: the running interpreter's own, or for another architecture the same Python
    # version's settings file from that architecture's libpython package (/usr/lib/python3.X/_sysconfigdata_*).
    read -r PY_STATIC_LIB PY_INCLUDE PY_LIBS < <("$PYTHON" - "$1" "$NATIVE_ARCH" "$TRIPLET" <<'PY'
import runpy, sys, sysconfig
arch, native, triplet = sys.argv[1:]
if arch == native:
    v = sysconfig.get_config_var
else:
    v = runpy.run_path(f"{sysconfig.get_path('stdlib')}/_sysconfigdata__linux_{triplet}.py")["build_time_vars"].get
libs = dict.fromkeys(" ".join((v("LIBS"), v("SYSLIBS"), v("MODLIBS"))).split())
print(v("LIBPL") + "/" + v("LIBRARY"), v("INCLUDEPY"), " ".join(libs))
PY
)
    LIBDIRS=("/lib/$TRIPLET" "/usr/lib/$TRIPLET")
}

# retarget_bundle ARCH DIR: PyInstaller collected the build machine's extension modules and libraries; for
# another architecture, replace them in DIR by that architecture's (same Python version: the .pyc files are
# the same for all). Nothing to do for the build machine's own.
retarget_bundle() {
    local arch=$1
    [ "$arch" = "$NATIVE_ARCH" ] && return
    "$PYTHON" -m cni_common.bundle.cross "$2" "$arch"
}

# The bundle's program: the distribution's static interpreter (the one the venv runs, whose modules PyInstaller
# just collected) with runner.c as its main, linked as the distribution links /usr/bin/python3.X. It replaces
# PyInstaller's bootloader (see the comment in runner.c for why).
build_runner() {
    local out=$1
    if [ ! -f "$PY_STATIC_LIB" ] || [ ! -f "$PY_INCLUDE/Python.h" ]; then
        echo "build.sh: $PY_STATIC_LIB or $PY_INCLUDE/Python.h is missing: install the interpreter's" \
             "development files (Debian: python3-dev)" >&2
        exit 1
    fi
    # shellcheck disable=SC2086,SC2016 - $PY_LIBS is a list of flags; $ORIGIN is for the dynamic linker
    "$CC" -O2 -Wall -no-pie -I"$PY_INCLUDE" -o "$out" cni_common/bundle/runner.c "$PY_STATIC_LIB" $PY_LIBS \
        -Xlinker -export-dynamic -Wl,--disable-new-dtags,-rpath,'$ORIGIN/_internal' -Wl,--build-id=sha1
    "$STRIP" "$out"
}

# The launcher is linked statically (the C library's libc.a, zlib's libz.a): it runs on any node, and answers
# VERSION without the bundle. It starts the program through the bundle's loader, named at compile time.
build_launcher() {
    local loader=$1 out=$2
    "$CC" -static -O2 -Wall -Wno-format-truncation -DBUNDLED_LOADER="\"$loader\"" -o "$out" \
        cni_common/bundle/launcher.c -lz
    "$STRIP" "$out"
}

# What the files carry, for `<plugin>` run without CNI_COMMAND and the tarball's README: which C library (with
# the distribution's package version, the one security advisories name) and which Python.
write_build_info() {
    local arch=$1 dir=$2 python
    python=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    {
        echo "platform=linux/$arch"
        echo "python=$(package_version "libpython$python-stdlib:$arch")"
        echo "glibc=$(package_version "libc6:$arch")"
        echo "zlib=$(package_version "zlib1g:$arch")"
        echo "openssl=$(package_version "libssl3:$arch")"
    } > "$dir/_internal/cni_common/bundle/build-info"
}

package_version() {
    dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown
}

# PyInstaller once for all architectures: the .pyc files are the same for all; its binaries are the build
# machine's (retarget_bundle swaps them for another architecture's).
freeze() {
    rm -rf "$WORK"
    mkdir -p "$WORK"
    # The modules the dispatcher imports by name (the table's plugins and modes): the spec collects them. Passed
    # in rather than imported by the spec, which lives in the library's folder and must not import plugins/.
    CNI_SUITE_PROGRAM_MODULES=$("$PYTHON" -c 'from plugins.multicall import MODES, PLUGINS
print(*sorted({*PLUGINS.values(), *(target.partition(":")[0] for target in MODES.values())}))') \
    PYTHONHASHSEED=0 "$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
        --distpath "$WORK/frozen" --workpath "$WORK/work" cni_common/bundle/cni-suite.spec
}

# One architecture's single file, its four names, and its release tarball, under $WORK/out.
build_arch() {
    local arch=$1 dir=$WORK/$1 loader
    arch_config "$arch"
    mkdir -p "$dir" "$WORK/out/linux-$arch"
    cp -a "$WORK/frozen/cni-suite" "$dir/bundle"
    retarget_bundle "$arch" "$dir/bundle"
    build_runner "$dir/bundle/cni-suite"
    loader=$("$PYTHON" -m cni_common.bundle.clibs "$dir/bundle" "${LIBDIRS[@]}")
    write_build_info "$arch" "$dir/bundle"
    build_launcher "$loader" "$dir/launcher"
    "$PYTHON" -m cni_common.bundle.pack "$dir/launcher" "$dir/bundle" "$dir/cni-suite" \
        "${PLUGIN_TYPES[@]}" >/dev/null
    for type in "${PLUGIN_TYPES[@]}"; do
        install -m 0755 "$dir/cni-suite" "$WORK/out/linux-$arch/$type"
    done
    "$PYTHON" -m cni_common.bundle.release "$WORK/out" "$arch" "$dir/bundle/_internal/cni_common/bundle/build-info"
}

source_date_epoch() {
    if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
        SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
    fi
    export SOURCE_DATE_EPOCH
}

# dist/ is replaced as a whole at the end (tests or a bench may be running the previous files), and two builds
# never run at once (they share the work folder).
build() {
    local arch
    mkdir -p build
    exec 9>build/.lock
    flock 9
    source_date_epoch
    freeze
    for arch in "$@"; do
        build_arch "$arch"
    done
    if [ -d "$WORK/out/linux-$NATIVE_ARCH" ]; then
        for type in "${PLUGIN_TYPES[@]}"; do
            ln "$WORK/out/linux-$NATIVE_ARCH/$type" "$WORK/out/$type"
        done
    fi
    rm -rf build/dist.old
    [ -d dist ] && mv dist build/dist.old
    mv "$WORK/out" dist
    rm -rf build/dist.old
    ls -l dist/ dist/linux-*/
    exec 9>&-
}

# Each type is hard-linked to one copy in DIR, and every name appears by rename(2): a runtime exec'ing a
# plugin during the install sees the old file or the new one, never a half-written one ("text file busy").
install_into() {
    local dir=$1 arch=$2 source staged type temporary=()
    source=dist/linux-$arch/${PLUGIN_TYPES[0]}
    [ -x "$source" ] || build "$arch"
    mkdir -p "$dir"
    staged=$(mktemp "$dir/.cni-suite.XXXXXX")
    for type in "${PLUGIN_TYPES[@]}"; do temporary+=("$dir/.$type.new"); done
    # A failure on the way (disk full, read-only) leaves no temporary name behind in DIR; after a success there is
    # none left to remove. (The names are expanded now: the function's locals are gone when the script exits.)
    # shellcheck disable=SC2064
    trap "rm -f -- $(printf '%q ' "$staged" "${temporary[@]}")" EXIT
    cp "$source" "$staged"
    chmod 0755 "$staged"
    for type in "${PLUGIN_TYPES[@]}"; do
        ln -f "$staged" "$dir/.$type.new"
        mv -f "$dir/.$type.new" "$dir/$type"
    done
    rm -f "$staged"
    echo "installed ${PLUGIN_TYPES[*]} into $dir"
}

# The installer image the manifests name (conf-examples/kubernetes/Containerfile: FROM scratch + the single file),
# built by buildah with no network (FROM scratch pulls nothing; each architecture is a --platform build that runs
# no command, so no emulator is needed), one image per architecture, then one multi-arch index, written as an OCI
# archive. Reproducible like the tarballs: --timestamp puts SOURCE_DATE_EPOCH into the image (config, history,
# file times), and the archive is packed by cni_common/bundle/oci_archive.py (buildah's tar has the build's file
# times). buildah's storage is a folder of its own under build/ (vfs: no overlay mounts), removed afterwards.
# IMAGE names the image (default: the name the manifests use); IMAGE_DIST is the folder the files are taken from
# (<folder>/linux-<arch>/) and the archive written to (default dist/, built first when a file is missing).
build_image() {
    local version image storage arch refs=() out dist=${IMAGE_DIST:-dist}
    local file=bridge  # the name conf-examples/kubernetes/Containerfile copies (every name is the same file)
    version=$("$PYTHON" -c 'from cni_common import __version__; print(__version__)')
    image=${IMAGE:-registry.example.com/cni-suite:$version}
    for arch in "$@"; do
        [ -x "$dist/linux-$arch/$file" ] || [ "$dist" != dist ] || build "$@"
        if [ ! -x "$dist/linux-$arch/$file" ]; then
            echo "build.sh: no $dist/linux-$arch/$file to put into the image" >&2
            exit 1
        fi
    done
    if ! command -v buildah >/dev/null; then
        echo "build.sh: ./build.sh image needs buildah (Debian: apt-get install buildah; bash .ci/setup does)" >&2
        exit 1
    fi
    source_date_epoch
    mkdir -p build
    exec 9>build/.lock
    flock 9
    storage=build/image
    rm -rf "$storage"
    local buildah=(buildah --root "$PWD/$storage/root" --runroot "$PWD/$storage/run" --storage-driver vfs)
    "${buildah[@]}" manifest create "localhost/cni-suite:$version" >/dev/null
    for arch in "$@"; do
        "${buildah[@]}" build --quiet --platform "linux/$arch" --timestamp "$SOURCE_DATE_EPOCH" \
            --build-arg "VERSION=$version" -f conf-examples/kubernetes/Containerfile \
            -t "localhost/cni-suite:$version-$arch" "$dist" >/dev/null
        "${buildah[@]}" manifest add "localhost/cni-suite:$version" \
            "containers-storage:localhost/cni-suite:$version-$arch" >/dev/null
        refs+=("linux/$arch")
    done
    "${buildah[@]}" manifest push --quiet --all --format oci "localhost/cni-suite:$version" \
        "oci:$PWD/$storage/layout:$image"
    out=$dist/cni-suite-image-v$version.tar
    "$PYTHON" -m cni_common.bundle.oci_archive "$storage/layout" "$image" "$out" >/dev/null
    rm -rf "$storage"
    exec 9>&-
    echo "$out: $image for ${refs[*]} ($(cut -d' ' -f1 "$out.sha256"))"
}

usage() {
    echo "usage: ./build.sh [--arch ARCH]... [build] | ./build.sh [--arch ARCH] install DIR" \
         "| ./build.sh [--arch ARCH]... image" \
         "(architectures: ${ARCHES[*]}; install: the build machine's unless --arch)" >&2
    exit 2
}

selected=()
while [ $# -gt 0 ]; do
    case $1 in
        --arch) [ $# -ge 2 ] || usage; arch_config "$2"; selected+=("$2"); shift 2 ;;
        build) shift ;;
        image) [ $# -eq 1 ] || usage; ((${#selected[@]})) || selected=("${ARCHES[@]}"); build_image "${selected[@]}"; exit ;;
        install) [ $# -eq 2 ] && ((${#selected[@]} <= 1)) || usage; install_into "$2" "${selected[0]:-$NATIVE_ARCH}"; exit ;;
        *) usage ;;
    esac
done
((${#selected[@]})) || selected=("${ARCHES[@]}")
build "${selected[@]}"
