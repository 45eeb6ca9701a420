#!/bin/sh
# Build the libcni 1.1.2 test driver to tests/bin/cnitool, offline, in GOPATH
# mode against Debian's golang-github-appc-cni-dev (/usr/share/gocode).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../bin/cnitool"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# GOPATH mode needs the package under $GOPATH/src; a private GOPATH keeps the
# build cache and the copied source out of the repo.
mkdir -p "$work/src/cnitool" "$(dirname "$out")"
cp "$here/main.go" "$work/src/cnitool/"
cd "$work/src/cnitool"
GO111MODULE=off GOPROXY=off GOPATH="$work:/usr/share/gocode" \
    GOCACHE="${GOCACHE:-$work/cache}" CGO_ENABLED=0 \
    go build -o "$out" .
echo "built $out" >&2
