#!/bin/sh
# RUSTC_WRAPPER for the fuzz build (run.sh): adds libFuzzer's SanitizerCoverage instrumentation
# (the flags cargo-fuzz passes, all stable -C options; no sanitizer) to the crates that hold the
# fuzzed parsers only, so wasmtime, tokio and the rest build as usual: faster to build, and the
# coverage libFuzzer follows is the parsers'. Cargo calls: sancov-rustc.sh <rustc> <args...>.
rustc="$1"
shift
case " ${WALCAST_FUZZ_INSTRUMENT:-walcast walcast-fuzz simd-json serde_json chrono} " in
*" ${CARGO_PKG_NAME:-none} "*)
    case " $* " in
    *" --crate-name build_script_"*) ;;
    *)
        exec "$rustc" "$@" \
            -Cpasses=sancov-module \
            -Cllvm-args=-sanitizer-coverage-level=4 \
            -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
            -Cllvm-args=-sanitizer-coverage-pc-table \
            -Cllvm-args=-sanitizer-coverage-trace-compares \
            -Cllvm-args=-sanitizer-coverage-stack-depth \
            -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
            --cfg fuzzing
        ;;
    esac
    ;;
esac
exec "$rustc" "$@"
