#!/bin/bash

#
# Build the nethvoice-bypass module image with buildah, from ./Containerfile.
# Shaped like NethServer/ns8-kickstart build-images.sh: REPOBASE and IMAGETAG
# defaults, and with CI set the image list goes to $GITHUB_OUTPUT for the
# ns8-github-actions publish workflow.
#

set -e -o pipefail

images=()
repobase="${REPOBASE:-ghcr.io/nethserver}"
reponame="nethvoice-bypass"

# vfs + chroot work wherever buildah runs (also nested, without fuse-overlayfs).
# Not on GitHub Actions: its publish step pushes with the runner's default
# storage, so the image must be committed there.
if [[ -z "${STORAGE_DRIVER}" && "${GITHUB_ACTIONS}" != "true" ]]; then
    export STORAGE_DRIVER=vfs
fi
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

cd "$(dirname "$0")"

# The build context holds only what goes into the image.
context=$(mktemp -d)
trap 'rm -rf "${context}"' EXIT

build_ui() (
    cd ui
    # vue-cli 4 (webpack 4) needs the legacy OpenSSL provider on Node >= 17
    export NODE_OPTIONS="${NODE_OPTIONS:---openssl-legacy-provider}"
    if [[ -f yarn.lock ]]; then
        # corepack honours package.json "packageManager" (yarn 4 in NS8 UIs)
        if command -v corepack >/dev/null; then
            corepack yarn install && corepack yarn build
        else
            yarn install && yarn build
        fi
    elif [[ -f package-lock.json ]]; then
        npm ci && npm run build
    else
        npm install && npm run build
    fi
)

if [[ ! -d ui/dist && -f ui/package.json ]]; then
    echo "Build static UI files with the host's node..."
    build_ui
fi
mkdir "${context}/ui"
if [[ -d ui/dist ]]; then
    cp -a ui/dist/. "${context}/ui/"
else
    # extract-ui needs /ui to exist, even empty
    echo "WARNING: neither ui/dist nor ui/package.json: the image gets an empty /ui" >&2
fi

# Leave out Python caches that local test runs leave in imageroot/
tar --exclude=__pycache__ --exclude='*.pyc' -cf - imageroot | tar -C "${context}" -xf -

buildah build --file "${PWD}/Containerfile" --tag "${repobase}/${reponame}" "${context}"

images+=("${repobase}/${reponame}")

# docker:// URLs must be lowercase (,,). Our own CI sets CI but has no
# GITHUB_OUTPUT: print the hint there.
if [[ -n "${CI}" && -n "${GITHUB_OUTPUT}" ]]; then
    printf "images=%s\n" "${images[*],,}" >> "${GITHUB_OUTPUT}"
else
    imagetag="${IMAGETAG:-latest}"
    printf "Publish the images with:\n\n"
    for image in "${images[@],,}"; do
        printf "  %sbuildah push %s docker://%s:%s\n" \
            "${STORAGE_DRIVER:+STORAGE_DRIVER=${STORAGE_DRIVER} }" \
            "${image}" "${image}" "${imagetag//\//-}"
    done
    printf "\n"
fi
