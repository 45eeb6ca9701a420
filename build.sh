#!/bin/bash
# Build the suite's plugins as single-file executables into dist/, one per CNI type.
#
#   ./build.sh                 build dist/bridge, dist/host-local, dist/portmap, dist/vxlan
#   ./build.sh install DIR     build if needed, then install them into DIR (e.g. /opt/cni/bin) atomically
#
# All types are one multi-call program (plugins/multicall.py picks the plugin from the name it runs as),
# frozen once by PyInstaller as a tuned one-folder bundle (cni_common/bundle/cni-suite.spec), then packed
# behind a small C launcher (cni_common/bundle/launcher.c) into ONE file. On its first run the file unpacks
# the bundle into a root-only cache keyed by its hash; later runs only exec it. See docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-.venv/bin/python}
# The suite's one table of CNI types (plugins/multicall.py), read with the Python that builds.
read -r -a PLUGIN_TYPES < <("$PYTHON" -c 'from plugins.multicall import PLUGINS; print(*PLUGINS)')
if ((${#PLUGIN_TYPES[@]} == 0)); then
    echo "build.sh: cannot read the plugin types from plugins/multicall.py with $PYTHON (run bash .ci/setup)" >&2
    exit 1
fi
WORK=build/pyinstaller

# The bundle's program: the distribution's static interpreter (the one the venv runs, whose modules PyInstaller
# just collected) with runner.c as its main, linked as the distribution links /usr/bin/python3.X. It replaces
# PyInstaller's bootloader (see the comment in runner.c for why).
build_runner() {
    local out=$1 static_lib include libs
    read -r static_lib include libs < <("$PYTHON" -c 'import sysconfig
v = sysconfig.get_config_var
libs = dict.fromkeys(" ".join((v("LIBS"), v("SYSLIBS"), v("MODLIBS"))).split())
print(v("LIBPL") + "/" + v("LIBRARY"), v("INCLUDEPY"), " ".join(libs))')
    if [ ! -f "$static_lib" ] || [ ! -f "$include/Python.h" ]; then
        echo "build.sh: $static_lib or $include/Python.h is missing: install the interpreter's development" \
             "files (Debian: python3-dev)" >&2
        exit 1
    fi
    # shellcheck disable=SC2086,SC2016 - $libs is a list of flags; $ORIGIN is for the dynamic linker
    gcc -O2 -Wall -no-pie -I"$include" -o "$out" cni_common/bundle/runner.c "$static_lib" $libs \
        -Xlinker -export-dynamic -Wl,--disable-new-dtags,-rpath,'$ORIGIN/_internal'
    strip "$out"
}

# dist/ is replaced as a whole at the end (tests or a bench may be running the previous files), and two builds
# never run at once (they share the work folder).
build() {
    mkdir -p build
    exec 9>build/.lock
    flock 9
    rm -rf "$WORK"
    mkdir -p "$WORK/out"
    "$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
        --distpath "$WORK/dist" --workpath "$WORK/work" cni_common/bundle/cni-suite.spec
    build_runner "$WORK/dist/cni-suite/cni-suite"
    gcc -O2 -Wall -Wno-format-truncation -o "$WORK/launcher" cni_common/bundle/launcher.c -lz
    strip "$WORK/launcher"
    "$PYTHON" -m cni_common.bundle.pack "$WORK/launcher" "$WORK/dist/cni-suite" "$WORK/cni-suite" \
        "${PLUGIN_TYPES[@]}" >/dev/null
    for type in "${PLUGIN_TYPES[@]}"; do
        install -m 0755 "$WORK/cni-suite" "$WORK/out/$type"
    done
    rm -rf build/dist.old
    [ -d dist ] && mv dist build/dist.old
    mv "$WORK/out" dist
    rm -rf build/dist.old
    ls -l dist/
    exec 9>&-
}

# Each type is hard-linked to one copy in DIR, and every name appears by rename(2): a runtime exec'ing a
# plugin during the install sees the old file or the new one, never a half-written one ("text file busy").
install_into() {
    local dir=$1 staged
    [ -x "dist/${PLUGIN_TYPES[0]}" ] || build
    mkdir -p "$dir"
    staged=$(mktemp "$dir/.cni-suite.XXXXXX")
    cp "dist/${PLUGIN_TYPES[0]}" "$staged"
    chmod 0755 "$staged"
    for type in "${PLUGIN_TYPES[@]}"; do
        ln -f "$staged" "$dir/.$type.new"
        mv -f "$dir/.$type.new" "$dir/$type"
    done
    rm -f "$staged"
    echo "installed ${PLUGIN_TYPES[*]} into $dir"
}

case "${1:-build}" in
    build) build ;;
    install) install_into "${2:?usage: ./build.sh install DIR}" ;;
    *) echo "usage: ./build.sh [build | install DIR]" >&2; exit 2 ;;
esac
