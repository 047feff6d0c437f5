#!/bin/sh
# Builds every guest plugin from source into plugins/dist/<name>.wasm (never checked in).
#
# Rust plugins need a toolchain with the wasm32-unknown-unknown target. In order of preference:
#   1. the rustup toolchain `debian` (Debian's rustc 1.63 linked with `rustup toolchain link`);
#   2. the default toolchain, when it has the wasm32 target installed;
#   3. otherwise Debian's toolchain is installed (apt-get; sudo when not root) and linked.
# The AssemblyScript plugin (plugins/keyword) is built by its own build.sh when present.
set -eu

cd "$(dirname "$0")"
HERE=$(pwd)
TARGET=wasm32-unknown-unknown
RUST_PLUGINS="threshold redact geofence endless_loop memory_bomb stray_import wrong_abi bad_pointer"

# Settings meant for a host build (e.g. when run from cargo or CI with RUSTFLAGS=-Ctarget-cpu=native)
# would break or redirect a wasm build: this workspace pins its own.
unset RUSTC RUSTDOC RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER RUSTFLAGS CARGO_ENCODED_RUSTFLAGS \
	CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET CARGO_BUILD_TARGET_DIR 2>/dev/null || true
export CARGO_TARGET_DIR="$HERE/target"

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Does `rustc` (with optional +toolchain) have the wasm32 standard library?
has_wasm_std() {
	dir=$(rustc "$@" --print target-libdir --target "$TARGET" 2>/dev/null) || return 1
	ls "$dir"/libcore-*.rlib >/dev/null 2>&1
}

pick_cargo() {
	if cargo +debian --version >/dev/null 2>&1 && has_wasm_std +debian; then
		CARGO="cargo +debian"
	elif command -v cargo >/dev/null 2>&1 && has_wasm_std; then
		CARGO="cargo"
	else
		return 1
	fi
}

if ! pick_cargo; then
	echo "build.sh: no Rust toolchain with the $TARGET target; installing Debian's rustc" >&2
	as_root apt-get update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y rustc cargo libstd-rust-dev-wasm32
	if command -v rustup >/dev/null 2>&1; then
		rustup toolchain link debian /usr
	fi
	pick_cargo || {
		echo "build.sh: still no toolchain with the $TARGET target after installing" >&2
		exit 1
	}
fi

echo "build.sh: building Rust plugins with: $CARGO" >&2
$CARGO build --release --target "$TARGET"

mkdir -p dist
for name in $RUST_PLUGINS; do
	cp "target/$TARGET/release/$name.wasm" "dist/$name.wasm"
done

if [ -f keyword/build.sh ]; then
	echo "build.sh: building the AssemblyScript plugin keyword" >&2
	sh keyword/build.sh
fi

ls -l dist/*.wasm >&2
