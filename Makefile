# Entry points: `make run` starts walcast, `make test` runs every test (what .ci/run calls).
# `make setup` installs Postgres 15 + wal2json when missing (idempotent, quiet when present);
# `make test` also installs Chromium and chromedriver for the viewer page's browser test.

CARGO ?= cargo
TARGET_DIR := $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(CURDIR)/target)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup test-setup plugins run test

PG_PACKAGES := postgresql-15 postgresql-15-wal2json
# The viewer page's end-to-end test drives Debian's Chromium through chromedriver.
BROWSER_PACKAGES := chromium chromium-driver

# Installs the Debian packages in $(1) that are missing, with one `apt-get update` first.
define ensure_packages
	@missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi
endef

setup:
	$(call ensure_packages,$(PG_PACKAGES))

test-setup:
	$(call ensure_packages,$(PG_PACKAGES) $(BROWSER_PACKAGES))

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
test: test-setup plugins
	$(CARGO) build --workspace --release --all-targets
	WALCAST_BIN="$(TARGET_DIR)/release/walcast" $(CARGO) test --workspace --release
	# Short fuzzing run: each of the six targets for 10 s (builds them first;
	# see docs/development/fuzzing.md).
	bash server/fuzz/run.sh 10
