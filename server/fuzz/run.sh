#!/usr/bin/env bash
# Fuzz walcast's parsers with libFuzzer on stable Rust (docs/development/fuzzing.md).
#
#   server/fuzz/run.sh [SECONDS] [TARGET...]
#
# Builds the targets (release, SanitizerCoverage on the parsers' crates: see sancov-rustc.sh)
# into $CARGO_TARGET_DIR/fuzz (default target/fuzz), then runs each target (default: all six,
# query decode client output journal schema) for SECONDS (default 10) from its seeds in server/fuzz/corpus/<t>
# plus the corpus earlier runs grew in target/fuzz/corpus/<t>. Prints per target the execs,
# execs/s, coverage and corpus size; a crash (panic, timeout, out of memory) leaves its input in
# target/fuzz/artifacts/<t>/ and makes the script exit 1. Installs g++ (libFuzzer is C++) when
# missing. WALCAST_FUZZ_ARGS adds libFuzzer options to every run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-10}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(query decode client output journal schema)
case "$secs" in '' | *[!0-9]*) echo "run.sh: SECONDS must be a whole number, got '$secs'" >&2; exit 2 ;; esac

out=${CARGO_TARGET_DIR:-$root/target}/fuzz

if ! command -v c++ >/dev/null 2>&1; then
    echo "run.sh: installing g++ (libFuzzer's runtime is C++)"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q g++
fi

# Same dependency versions as the server ships with: start from the workspace's lockfile (cargo
# adds libfuzzer-sys and its few dependencies). The fuzz crate has its own workspace and lockfile.
cp "$root/Cargo.lock" "$here/Cargo.lock"

# The instrumentation is added by the wrapper, which cargo does not fingerprint: a change of its
# flags or crate list cleans the instrumented crates so they are rebuilt with it.
stamp="$out/instrumentation.stamp"
want=$(cat "$here/sancov-rustc.sh"; echo "${WALCAST_FUZZ_INSTRUMENT:-}")
mkdir -p "$out"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" != "$want" ]; then
    cargo clean --release --manifest-path "$here/Cargo.toml" --target-dir "$out" \
        -p walcast -p walcast-fuzz -p simd-json -p serde_json -p chrono -q || true
fi

build_start=$(date +%s)
RUSTC_WRAPPER="$here/sancov-rustc.sh" cargo build --release --bins \
    --manifest-path "$here/Cargo.toml" --target-dir "$out"
printf '%s' "$want" >"$stamp"
echo "fuzz build: $(($(date +%s) - build_start)) s"

declare -A dict=([query]=query [decode]=json [client]=client [output]=output [journal]=journal [schema]=json)
declare -A max_len=([query]=4096 [decode]=8192 [client]=4096 [output]=8192 [journal]=64 [schema]=8192)
fail=0
summary=()
for t in "${targets[@]}"; do
    bin="$out/release/$t"
    if [ ! -x "$bin" ] || [ -z "${dict[$t]:-}" ]; then
        echo "run.sh: unknown target '$t' (query decode client output journal schema)" >&2
        exit 2
    fi
    work="$out/corpus/$t"
    artifacts="$out/artifacts/$t"
    log="$out/logs/$t.log"
    mkdir -p "$work" "$artifacts" "$(dirname "$log")"
    echo "== $t: ${secs} s"
    rc=0
    # shellcheck disable=SC2086 # WALCAST_FUZZ_ARGS is a list of options
    "$bin" "$work" "$here/corpus/$t" \
        -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -max_len="${max_len[$t]}" -dict="$here/dict/${dict[$t]}.dict" \
        -artifact_prefix="$artifacts/" ${WALCAST_FUZZ_ARGS:-} >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1) || true
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1) || true
    cov=$( (grep -o 'cov: [0-9]*' "$log" || true) | tail -1 | cut -d' ' -f2)
    files=$(find "$work" -type f | wc -l)
    bytes=$(du -sb "$work" | cut -f1)
    line=$(printf '%-7s execs %10s  execs/s %7s  cov %5s  corpus %5s files %8s bytes' \
        "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$files" "$bytes")
    if [ "$rc" -ne 0 ]; then
        fail=1
        crash=$( (grep -o "Test unit written to .*" "$log" || true) | tail -1 | sed 's/Test unit written to //')
        line="$line  CRASH (exit $rc): ${crash:-see $log}"
        echo "--- $t: last lines of $log"
        tail -n 40 "$log"
        if [ -n "$crash" ] && [ -f "$crash" ]; then
            echo "--- input (reproduce: $bin $crash)"
            head -c 2048 "$crash" | od -c | head -40
        fi
    fi
    echo "$line"
    summary+=("$line")
done

echo "== fuzz summary (${secs} s a target)"
printf '%s\n' "${summary[@]}"
exit "$fail"
