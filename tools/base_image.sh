#!/usr/bin/env bash
# A stand-in for the images' base, python:3.11.7-slim-bookworm, where Docker Hub is out of
# reach but Debian's mirror is not: Debian bookworm (debootstrap, minbase, plus the runtime
# libraries the official image keeps) with a CPython 3.11.7 from this machine in /usr/local
# (its interpreter and standard library only) and the pip and setuptools its ensurepip
# bundles (23.2.1, 65.5.0, as the official image). Imported into podman's and buildah's
# store under the official name, so the Dockerfiles build unchanged. Needs root, debootstrap
# and podman:
#   sudo tools/base_image.sh [PYTHON_PREFIX]     # default: python3.11's sys.base_prefix
set -euo pipefail
NAME=docker.io/library/python:3.11.7-slim-bookworm
prefix=${1:-$(python3.11 -c 'import sys; print(sys.base_prefix)')}
version=$("$prefix/bin/python3.11" -c 'import platform; print(platform.python_version())')
[ "$version" = 3.11.7 ] || { echo "error: $prefix holds Python $version, not 3.11.7" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
debootstrap --variant=minbase \
  --include=ca-certificates,netbase,tzdata,libssl3,libsqlite3-0,libffi8,libbz2-1.0,liblzma5,zlib1g,libreadline8,libncursesw6,libgdbm6,libuuid1,libexpat1 \
  bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log"
mkdir -p "$root/usr/local/bin" "$root/usr/local/lib"
cp -a "$prefix/bin/python3.11" "$root/usr/local/bin/"
cp -a "$prefix"/lib/libpython3*.so* "$root/usr/local/lib/"
tar -C "$prefix/lib" --exclude='python3.11/site-packages/*' --exclude='__pycache__' \
  --exclude='python3.11/test' --exclude='python3.11/idlelib' --exclude='python3.11/tkinter' \
  -cf - python3.11 | tar -C "$root/usr/local/lib" -xf -
ln -s python3.11 "$root/usr/local/bin/python3"
ln -s python3 "$root/usr/local/bin/python"
chroot "$root" /sbin/ldconfig
chroot "$root" /usr/local/bin/python3.11 -m ensurepip --default-pip >/dev/null
[ -e "$root/usr/local/bin/pip" ] || ln -s pip3 "$root/usr/local/bin/pip"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
  "$root"/usr/share/man/*
chroot "$root" /usr/local/bin/python -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib'
tar -C "$root" -cf - . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'ENV PYTHON_VERSION=3.11.7' \
  --change 'CMD ["python3"]' - "$NAME" >/dev/null
podman image ls "$NAME" --format '{{.Repository}}:{{.Tag}} {{.Size}}'
