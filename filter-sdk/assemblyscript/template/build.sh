#!/bin/sh
# Builds this plugin into build/<directory name>.wasm, inside this directory (needs node >= 18 and
# npm). Copy that file into walcast's plugin directory (`plugins.dir`) to deploy it.
set -eu
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
	echo "$0: npm not found: AssemblyScript plugins need node >= 18 and npm" >&2
	exit 1
fi
name=$(basename "$(pwd)")
if [ -f package-lock.json ]; then
	npm ci --no-audit --no-fund
else
	npm install --no-audit --no-fund
fi
npm run build
if [ "$name" != plugin ]; then
	cp build/plugin.wasm "build/$name.wasm"
fi
echo "built build/$name.wasm"
