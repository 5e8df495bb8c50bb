#!/bin/sh
# A container base from Debian's packages, for where the python image cannot be pulled: Debian bookworm
# (minbase: no docs, man pages or locales) with python3 and python3-venv, imported into podman as
#   localhost/bnscope-base:bookworm      (then: podman build --build-arg BASE=localhost/bnscope-base:bookworm .)
# Needs root (or podman unshare), mmdebstrap and podman: apt-get install -y mmdebstrap podman
set -eu
tag=${1:-localhost/bnscope-base:bookworm}
tar=$(mktemp --suffix=.tar)
trap 'rm -f "$tar"' EXIT
mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --aptopt='Acquire::Languages "none"' bookworm "$tar"
podman import "$tar" "$tag"
