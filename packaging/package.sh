#!/bin/sh
# Builds connbeat's deb, rpm and tar.gz for one architecture into dist/:
#   dist/connbeat_<version>_<amd64|arm64>.deb
#   dist/connbeat-<version>.<x86_64|aarch64>.rpm
#   dist/connbeat-<version>-linux-<x86_64|arm64>.tar.gz
# Usage: packaging/package.sh amd64|arm64
# The version is the VERSION file's content (main.go embeds the same file,
# so `connbeat version` prints it). Runs from any directory; needs only Go
# (nfpm is a Go tool dependency in go.mod) and GNU tar.
set -eu

arch=${1:?usage: packaging/package.sh amd64|arm64}
cd "$(dirname "$0")/.."
GO=${GO:-go}
export GONOSUMDB=${GONOSUMDB:-github.com/elastic}

case "$arch" in
    amd64) rpmarch=x86_64 tararch=x86_64 ;;
    arm64) rpmarch=aarch64 tararch=arm64 ;;
    *) echo "package.sh: unsupported architecture $arch (amd64 or arm64)" >&2; exit 2 ;;
esac
version=$(tr -d ' \t\r\n' <VERSION)
# Reproducible timestamps in the packages: the last commit's time.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

build=build/$arch
mkdir -p "$build" dist

# A static binary: the same file runs on every distribution's libc, and
# nothing connbeat uses from libbeat needs cgo.
echo "== building connbeat $version for linux/$arch"
CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$GO" build -trimpath -ldflags "-s -w" -o "$build/connbeat" .
if [ "$arch" = "$("$GO" env GOHOSTARCH)" ]; then
    "$build/connbeat" version | grep -q "connbeat version $version " || {
        echo "package.sh: $build/connbeat does not report version $version" >&2
        exit 1
    }
fi

export CONNBEAT_VERSION=$version CONNBEAT_ARCH=$arch CONNBEAT_BINARY=$build/connbeat
deb=dist/connbeat_${version}_${arch}.deb
rpm=dist/connbeat-${version}.${rpmarch}.rpm
"$GO" tool nfpm pkg --config packaging/nfpm.yaml --packager deb --target "$deb"
"$GO" tool nfpm pkg --config packaging/nfpm.yaml --packager rpm --target "$rpm"

# The tar.gz runs from its own directory: libbeat's path.home defaults to
# the binary's directory, so config, data and logs stay beside it.
name=connbeat-${version}-linux-${tararch}
stage=$build/$name
rm -rf "$stage"
mkdir -p "$stage"
install -m 0755 "$build/connbeat" "$stage/connbeat"
install -m 0600 connbeat.yml "$stage/connbeat.yml"
install -m 0644 connbeat.reference.yml fields.yml README.md LICENSE "$stage/"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    -C "$build" -czf "dist/$name.tar.gz" "$name"
echo "== dist/$name.tar.gz"
