#!/usr/bin/env bash
# Installs what lipsync needs to build, test and run, and nothing that is already there.
#  - Debian packages (apt, as root) listed in mk/packages.txt
#  - ONNX Runtime (C API) from the npm registry, pinned and sha256-checked, into third_party/
# ORT_ROOT=/path skips the ONNX Runtime fetch and uses that install instead.
# LIPSYNC_DEPS=build installs only what building needs (the packages above the "test and demo
# only" line of mk/packages.txt), as the container image's build stage does.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${LIPSYNC_DEPS:-all}" == build ]]; then
    want=$(sed '/^# ---- test and demo only/,$d' mk/packages.txt | grep -v '^#' | tr '\n' ' ')
else
    want=$(grep -v '^#' mk/packages.txt | tr '\n' ' ')
fi
missing=()
for p in $want; do
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [[ "$st" == ii* ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "deps: missing Debian packages: ${missing[*]}" >&2
        echo "deps: run 'make deps' as root, or: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "deps: installing ${#missing[@]} Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ -n "${ORT_ROOT:-}" && "${ORT_ROOT}" != "third_party/onnxruntime" ]]; then
    [[ -f "$ORT_ROOT/include/onnxruntime_c_api.h" ]] || { echo "deps: ORT_ROOT=$ORT_ROOT has no include/onnxruntime_c_api.h" >&2; exit 1; }
    exit 0
fi

# ONNX Runtime 1.29, CPU build, from the npm package (header from the iOS framework, .so for Linux x64).
ORT_PKG=com.github.asus4.onnxruntime
ORT_PKG_VER=0.4.9
ORT_SHA256=e59788788818fdde1b2e522e766a21ba0f7d8391de55737abf81e32cc801785d
dest=third_party/onnxruntime
stamp="$dest/.stamp-$ORT_PKG_VER"
if [[ ! -f "$stamp" ]]; then
    if ! command -v npm >/dev/null; then
        [[ $(id -u) -eq 0 ]] && apt-get install -y -qq --no-install-recommends npm >/dev/null || { echo "deps: npm is needed to fetch ONNX Runtime" >&2; exit 1; }
    fi
    mkdir -p third_party/dl
    tgz="third_party/dl/$ORT_PKG-$ORT_PKG_VER.tgz"
    if [[ ! -f "$tgz" ]] || ! echo "$ORT_SHA256  $tgz" | sha256sum -c --status; then
        echo "deps: fetching $ORT_PKG@$ORT_PKG_VER (ONNX Runtime C API) from the npm registry"
        (cd third_party/dl && npm pack --silent "$ORT_PKG@$ORT_PKG_VER" >/dev/null)
    fi
    echo "$ORT_SHA256  $tgz" | sha256sum -c --status || { echo "deps: sha256 mismatch for $tgz" >&2; rm -f "$tgz"; exit 1; }
    rm -rf "$dest" third_party/dl/package
    tar -C third_party/dl -xzf "$tgz"
    mkdir -p "$dest/include" "$dest/lib"
    hdr="third_party/dl/package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers"
    cp "$hdr"/*.h "$dest/include/"
    cp third_party/dl/package/Plugins/Linux/x64/libonnxruntime.so "$dest/lib/"
    cp third_party/dl/package/Plugins/Linux/x64/libonnxruntime_providers_shared.so "$dest/lib/"
    # The library's SONAME is libonnxruntime.so.1.
    ln -sf libonnxruntime.so "$dest/lib/libonnxruntime.so.1"
    rm -rf third_party/dl/package
    touch "$stamp"
    echo "deps: ONNX Runtime installed in $dest"
fi
