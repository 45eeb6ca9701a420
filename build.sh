#!/bin/bash
# Build the suite's plugins as portable single-file executables, one per CNI type, and the release tarballs.
#
#   ./build.sh                     build every architecture (cni_common/bundle/arches.py) into dist/
#   ./build.sh --arch amd64        build only that architecture (repeat --arch for several; upstream's names:
#                                  amd64 arm64 arm mips64le ppc64le s390x)
#   ./build.sh install DIR         build if needed, then install the build machine's files into DIR atomically
#   ./build.sh --arch arm64 install DIR   the same with that architecture's files (e.g. a root for another node)
#   ./build.sh image               build if needed, then the installer image of every architecture in ARCHES (or
#                                  --arch): dist/cni-suite-image-v<version>.tar, one multi-arch OCI index
#
# dist/ afterwards (docs/packaging.md):
#   dist/linux-<arch>/{bridge,host-local,portmap,vxlan,...}      each architecture's one file, under every name
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
# Cached: an architecture whose inputs (the frozen bundle, these build files, its packages and compiler) did not
# change since the last build is copied from build/arch-cache/<arch>/ instead of being built again.
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
# Every architecture a plain ./build.sh builds (upstream's names), and the build machine's among them.
read -r -a ARCHES < <("$PYTHON" -m cni_common.bundle.arches)
NATIVE_ARCH=$("$PYTHON" -m cni_common.bundle.arches --native "$(dpkg --print-architecture)")
WORK=build/pyinstaller
# Another architecture's libraries and Python, unpacked from its Debian packages by .ci/setup
# (cni_common/bundle/sysroot.py), and the per-architecture build cache.
SYSROOTS=build/sysroot
ARCH_CACHE=build/arch-cache

# arch_config ARCH: the toolchain and target files of one architecture, as variables the steps below read:
#   CC STRIP        compiler (also the linker) and strip for the target
#   TRIPLET         the GNU multiarch name (x86_64-linux-gnu)
#   SYSROOT         "" for the build machine's architecture, else build/sysroot/ARCH: the target's packages
#   SYS_FLAGS       the compiler flags that find the target's headers and libraries in SYSROOT
#   LIBDIRS         the target's library folders (the C library the bundle carries is taken from there)
#   PY_STATIC_LIB PY_INCLUDE PY_LIBS   the target's static libpython, its headers, the libraries it needs
arch_config() {
    local debian qemu
    read -r debian TRIPLET qemu < <("$PYTHON" -m cni_common.bundle.arches "$1") || true
    [ -n "${qemu:-}" ] || exit 2  # (arches.py said why)
    SYSROOT="" SYS_FLAGS=()
    if [ "$1" = "$NATIVE_ARCH" ]; then
        CC=gcc STRIP=strip
    else
        # Debian's cross toolchain (gcc-s390x-linux-gnu...: its own libc.a and C headers) and the target's
        # packages unpacked into the sysroot (docs/packaging.md). -idirafter: the toolchain's C headers first.
        CC=$TRIPLET-gcc STRIP=$TRIPLET-strip SYSROOT=$SYSROOTS/$1
        if [ ! -f "$SYSROOT/.packages" ] || ! command -v "$CC" >/dev/null; then
            echo "build.sh: $1 needs $CC and $SYSROOT (run bash .ci/setup)" >&2
            exit 1
        fi
        SYS_FLAGS=(-idirafter "$SYSROOT/usr/include" -idirafter "$SYSROOT/usr/include/$TRIPLET"
                   -L"$SYSROOT/usr/lib/$TRIPLET" -L"$SYSROOT/lib/$TRIPLET"
                   -Wl,-rpath-link,"$SYSROOT/lib/$TRIPLET:$SYSROOT/usr/lib/$TRIPLET")
    fi
    # The target's build settings: the running interpreter's own, or for another architecture the same Python
    # version's settings file from that architecture's libpython package (/usr/lib/python3.X/_sysconfigdata_*).
    read -r PY_STATIC_LIB PY_INCLUDE PY_LIBS < <("$PYTHON" - "$SYSROOT" "$TRIPLET" <<'PY'
import runpy, sys, sysconfig
sysroot, triplet = sys.argv[1:]
if not sysroot:
    v = sysconfig.get_config_var
else:
    path = f"{sysroot}{sysconfig.get_path('stdlib')}/_sysconfigdata__linux_{triplet}.py"
    v = runpy.run_path(path)["build_time_vars"].get
libs = dict.fromkeys(" ".join((v("LIBS"), v("SYSLIBS"), v("MODLIBS"))).split())
print(sysroot + v("LIBPL") + "/" + v("LIBRARY"), sysroot + v("INCLUDEPY"), " ".join(libs))
PY
)
    LIBDIRS=("$SYSROOT/lib/$TRIPLET" "$SYSROOT/usr/lib/$TRIPLET")
}

# retarget_bundle ARCH DIR: PyInstaller collected the build machine's extension modules and libraries; for
# another architecture, replace them in DIR by that architecture's (same Python version: the .pyc files are
# the same for all). Nothing to do for the build machine's own.
retarget_bundle() {
    local arch=$1
    [ "$arch" = "$NATIVE_ARCH" ] && return
    "$PYTHON" -m cni_common.bundle.cross "$2" "$arch" "$SYSROOT"
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
    "$CC" -O2 -Wall -no-pie -I"$PY_INCLUDE" "${SYS_FLAGS[@]}" -o "$out" cni_common/bundle/runner.c \
        "$PY_STATIC_LIB" $PY_LIBS -Xlinker -export-dynamic \
        -Wl,--disable-new-dtags,-rpath,'$ORIGIN/_internal' -Wl,--build-id=sha1
    "$STRIP" "$out"
}

# The launcher is linked statically, against musl (Debian's musl-dev: its libc.a, headers and gcc specs) and
# zlib's libz.a: it runs on any node, and answers VERSION without the bundle. It starts the program through the
# bundle's loader, named at compile time. Why musl and not glibc's libc.a: the launcher is exec'd by every call,
# and a static glibc program starts by probing the CPU (~75 `cpuid` instructions for its cache sizes), each of
# which traps to the hypervisor on a virtual machine: 0.56 ms of CPU per call on the test VM, where musl's start
# takes 0.03 ms (docs/packaging.md, "The launcher's C library").
build_launcher() {
    local loader=$1 out=$2 musl zlib_headers=$WORK/zlib-headers specs
    musl=$(echo "$SYSROOT"/usr/lib/"${TRIPLET%%-*}"-linux-musl*)
    if [ ! -f "$musl/libc.a" ] || [ ! -f "$musl/musl-gcc.specs" ]; then
        echo "build.sh: $musl/libc.a is missing: install musl-dev (run bash .ci/setup)" >&2
        exit 1
    fi
    specs=$musl/musl-gcc.specs
    if [ -n "$SYSROOT" ]; then  # the specs name musl's folders by absolute path: the sysroot's copy instead
        specs=$WORK/musl-${TRIPLET%%-*}.specs
        sed "s|/usr/|$(realpath "$SYSROOT")/usr/|g" "$musl/musl-gcc.specs" > "$specs"
    fi
    # musl's headers replace the C library's (-nostdinc in the specs); zlib's two come from the target's zlib1g-dev
    rm -rf "$zlib_headers"
    mkdir -p "$zlib_headers"
    cp "$SYSROOT/usr/include/zlib.h" "$SYSROOT/usr/include/zconf.h" "$zlib_headers/"
    "$CC" -specs "$specs" -static -O2 -Wall -Wno-format-truncation -DBUNDLED_LOADER="\"$loader\"" \
        -idirafter "$zlib_headers" -o "$out" cni_common/bundle/launcher.c "$SYSROOT/usr/lib/$TRIPLET/libz.a"
    "$STRIP" "$out"
}

# What the files carry, for `<plugin>` run without CNI_COMMAND and the tarball's README: which C library (with
# the distribution's package version, the one security advisories name) and which Python.
write_build_info() {
    local arch=$1 dir=$2 python
    python=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    {
        echo "platform=linux/$arch"
        echo "python=$(package_version "libpython$python-stdlib")"
        echo "glibc=$(package_version libc6)"
        echo "musl=$(package_version musl-dev)"
        echo "zlib=$(package_version zlib1g)"
        echo "openssl=$(package_version libssl3)"
    } > "$dir/_internal/cni_common/bundle/build-info"
}

# package_version PACKAGE: its Debian version for the architecture arch_config chose: the build machine's
# installed one (of its own architecture: a machine may have another's installed too), or the sysroot's.
package_version() {
    if [ -n "$SYSROOT" ]; then
        awk -v p="$1" '$1 == p {print $2; found=1} END {if (!found) print "unknown"}' "$SYSROOT/.packages"
    else
        dpkg-query -W -f='${Version}' "$1:$(dpkg --print-architecture)" 2>/dev/null || echo unknown
    fi
}

# arch_key ARCH: a hash of everything one architecture's file and tarball are made from (after freeze: FROZEN_HASH).
arch_key() {
    {
        echo "$1 ${PLUGIN_TYPES[*]} $SOURCE_DATE_EPOCH $FROZEN_HASH"
        sha256sum build.sh cni_common/__init__.py docs/LICENSE cni_common/bundle/*.*
        "$CC" --version
        if [ -n "$SYSROOT" ]; then
            cat "$SYSROOT/.packages"
        else
            # shellcheck disable=SC2046 - the same packages a sysroot holds, one per word
            dpkg-query -W libc6-dev $("$PYTHON" -m cni_common.bundle.sysroot --packages) 2>&1
        fi
    } | sha256sum | cut -d' ' -f1
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

# One architecture's single file under every plugin name (hard links) and its release tarball, under $WORK/out;
# from build/arch-cache/ARCH when nothing it is made from changed (arch_key).
build_arch() {
    local arch=$1 out=$WORK/out cache=$ARCH_CACHE/$1 key tarball
    arch_config "$arch"
    key=$(arch_key "$arch")
    tarball=$("$PYTHON" -c 'import sys; from cni_common.bundle.release import tarball_name
print(tarball_name(sys.argv[1]))' "$arch")
    if [ "$(cat "$cache/key" 2>/dev/null)" != "$key" ]; then
        rm -rf "$cache"
        make_arch "$arch" "$cache.new"
        echo "$key" > "$cache.new/key"
        mv "$cache.new" "$cache"
    else
        echo "build.sh: $arch unchanged since the last build: taken from $cache" >&2
    fi
    mkdir -p "$out/linux-$arch"
    cp "$cache/cni-suite" "$out/linux-$arch/${PLUGIN_TYPES[0]}"
    for type in "${PLUGIN_TYPES[@]:1}"; do
        ln "$out/linux-$arch/${PLUGIN_TYPES[0]}" "$out/linux-$arch/$type"
    done
    cp "$cache/$tarball" "$cache/$tarball.sha256" "$cache/$tarball.sha512" "$out/"
}

# make_arch ARCH DEST: build one architecture's file and release artifacts into DEST (the cache entry).
make_arch() {
    local arch=$1 dest=$2 dir=$WORK/$1 loader
    rm -rf "$dest" "$dir"
    mkdir -p "$dir" "$dest"
    cp -a "$WORK/frozen/cni-suite" "$dir/bundle"
    retarget_bundle "$arch" "$dir/bundle"
    build_runner "$dir/bundle/cni-suite"
    loader=$("$PYTHON" -m cni_common.bundle.clibs "$dir/bundle" "${LIBDIRS[@]}")
    write_build_info "$arch" "$dir/bundle"
    build_launcher "$loader" "$dir/launcher"
    "$PYTHON" -m cni_common.bundle.pack "$dir/launcher" "$dir/bundle" "$dest/cni-suite" \
        "${PLUGIN_TYPES[@]}" >/dev/null
    chmod 0755 "$dest/cni-suite"
    "$PYTHON" -m cni_common.bundle.release "$dest" "$arch" "$dir/bundle/_internal/cni_common/bundle/build-info" \
        "$dest/cni-suite" "${PLUGIN_TYPES[@]}" >/dev/null
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
    # what PyInstaller collected, the same for every architecture (arch_key)
    FROZEN_HASH=$(cd "$WORK/frozen" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum)
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
