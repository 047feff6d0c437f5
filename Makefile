# Entry points: `make run` starts walcast, `make test` runs every test (what .ci/run calls).
# `make setup` installs Postgres 15 + wal2json when missing (idempotent, quiet when present).

CARGO ?= cargo
PG_BIN ?= /usr/lib/postgresql/15/bin
PG_LIB ?= /usr/lib/postgresql/15/lib
TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(CURDIR)/target)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup plugins run test

setup:
	@if [ ! -x "$(PG_BIN)/postgres" ] || [ ! -f "$(PG_LIB)/wal2json.so" ]; then \
		echo "installing postgresql-15 and postgresql-15-wal2json"; \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-15 postgresql-15-wal2json; \
	fi

# Guest plugins (Rust + AssemblyScript) built from source into plugins/dist/; installs the wasm32
# toolchain (Debian's rustc) and npm packages when missing.
plugins:
	sh plugins/build.sh

# The demo serves the example plugins too: ?query=*:people&plugin=threshold&plugin.column=age&plugin.value=50
run: setup plugins
	WALCAST_PLUGIN_DIR="$${WALCAST_PLUGIN_DIR:-$(CURDIR)/plugins/dist}" $(CARGO) run --release -p walcast

# The end-to-end suite runs the release binary (the 1,000,000-row test measures its memory).
# Tests build with --release too: a debug-built WebSocket client reads a 1,000,000-row burst too
# slowly and is (rightly) closed as a slow consumer; --release also reuses the release deps.
# One build of everything with one feature set (--all-targets unifies dev-dependency features),
# so the test run below reuses it instead of compiling wasmtime a second time.
test: setup plugins
	$(CARGO) build --workspace --release --all-targets
	WALCAST_BIN="$(TARGET_DIR)/release/walcast" $(CARGO) test --workspace --release
