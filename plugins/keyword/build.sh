#!/bin/sh
# Builds the keyword filter plugin into ../dist/keyword.wasm (needs node >= 18 and npm).
set -eu
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
	echo "$0: npm not found: AssemblyScript plugins need node >= 18 and npm" >&2
	exit 1
fi
if [ -f package-lock.json ]; then
	npm ci --no-audit --no-fund
else
	npm install --no-audit --no-fund
fi
npm run build
mkdir -p ../dist
cp build/keyword.wasm ../dist/keyword.wasm
echo "built ../dist/keyword.wasm"
