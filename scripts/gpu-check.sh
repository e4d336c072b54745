#!/usr/bin/env bash
# On a GPU host (CUDA toolkit, a driver, cuBLAS, Bun): build with make, run the GPU tests, write a
# short report to $OUT/gpu-report.txt (or build/gpu-report.txt) with the GPU, counts and timings.
#   BUN=/path/to/bun      the Bun binary (default: bun on PATH, else node_modules/.bin/bun)
#   GPU_TESTS="..."       what `bun test` runs (default: test/gpu)
#   BUN_FLAGS="..."       flags before `test`, e.g. --config=other-bunfig.toml
#   GPU_TEST_SEED=n       fixed random inputs for test/gpu/ops.test.ts
#   GPU_BENCH_ALT="VAR=v[ VAR2=w][;VAR=u ...]"  also run the batch 1 and 32 figures once per ;-separated setting,
#                         into $OUT/bench-alt.txt (a variable nothing reads, e.g. LORA_SERVE_BENCH_REPEAT=1,
#                         times the same code again: the run-to-run noise)
#   GPU_PROFILE=1         also time each kernel of one step per figure under Nsight Compute (ncu), where it
#                         exists: per-kernel totals in $OUT/kernels.txt (GPU_PROFILE_TIMEOUT, 150 s)
# Exit status: that of the tests (the build's, if it fails). Bounded by GPU_CHECK_TIMEOUT (240 s) for the tests and GPU_BENCH_TIMEOUT (200 s) for `bench --synthetic`.
set -uo pipefail
cd "$(dirname "$0")/.."

dest="${OUT:-build}"
mkdir -p build "$dest"
report="$dest/gpu-report.txt"
log="$dest/gpu-test.log"
BUN="${BUN:-$(command -v bun || echo node_modules/.bin/bun)}"

# cuBLAS is dlopen'ed by soname; where the loader's cache lacks it, point LD_LIBRARY_PATH at a copy
# (the toolkit's lib64, or the nvidia-cublas Python wheel).
if ! ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.1[23]'; then
  for dir in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/targets/x86_64-linux/lib \
    $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, s, "lib") for p in nvidia.__path__ for s in ("cu13", "cublas")))' 2>/dev/null); do
    if ls "$dir"/libcublas.so.1[23] >/dev/null 2>&1; then
      export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      break
    fi
  done
fi

t0=$(date +%s)
if ! make -j"$(nproc)" all >"$dest/gpu-build.log" 2>&1; then
  tail -20 "$dest/gpu-build.log"
  echo "gpu-check: build failed (see $dest/gpu-build.log)" | tee "$report"
  exit 1
fi
t1=$(date +%s)
# shellcheck disable=SC2086
timeout "${GPU_CHECK_TIMEOUT:-240}" "$BUN" ${BUN_FLAGS:-} test ${GPU_TESTS:-test/gpu} 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
t2=$(date +%s)
# the synthetic benchmark: Llama-2-7B shape, random weights, figures next to their ceilings
bench="$dest/bench.txt"
if [ -z "${SKIP_BENCH:-}" ]; then
  timeout "${GPU_BENCH_TIMEOUT:-200}" "$BUN" src/cli/main.ts bench --synthetic "${BENCH_PRESET:-llama-2-7b}" --device cuda \
    --out "$dest/bench.json" >"$bench" 2>"$dest/bench.log"
  brc=$?
  [ "$rc" = 0 ] && rc=$brc
fi
# the same figures at batch 1 and 32 with settings changed (GPU_BENCH_ALT, e.g. LORA_SERVE_CUDA_PDL=0), side by side
if [ -z "${SKIP_BENCH:-}" ] && [ -n "${GPU_BENCH_ALT:-}" ]; then
  : >"$dest/bench-alt.txt"
  IFS=';' read -ra alts <<<"$GPU_BENCH_ALT"
  for alt in "${alts[@]}"; do
    # shellcheck disable=SC2086
    { echo "with $alt:"; env $alt timeout 120 "$BUN" src/cli/main.ts bench --synthetic "${BENCH_PRESET:-llama-2-7b}" \
      --device cuda --batch-sizes 1,32 --prefill 256; } >>"$dest/bench-alt.txt" 2>>"$dest/bench.log"
  done
fi
# structured output on the device: mask time a step for 64 schema-constrained sequences at a 128k vocabulary
if [ -z "${SKIP_BENCH:-}" ]; then
  timeout 120 "$BUN" src/cli/main.ts bench --grammar --device cuda --model test/fixtures/hf/models/tiny-llama3 >"$dest/bench-grammar.txt" 2>>"$dest/bench.log"
fi
t3=$(date +%s)
# where the time goes, kernel by kernel (optional: about two minutes): one eager step of each decode
# figure (batch 1 and 32) and the prefill under Nsight Compute, summed per kernel into kernels.txt
if [ -n "${GPU_PROFILE:-}" ]; then
  ncu_bin="$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)"
  if [ -n "$ncu_bin" ]; then
    timeout "${GPU_PROFILE_TIMEOUT:-150}" "$ncu_bin" --profile-from-start off --metrics gpu__time_duration.sum \
      --cache-control none --clock-control none --csv --page raw --print-units base --print-kernel-base function \
      --log-file "$dest/ncu.csv" "$BUN" src/cli/main.ts bench --synthetic "${BENCH_PRESET:-llama-2-7b}" --device cuda \
      --batch-sizes 1,32 --steps 2 --profile --out "$dest/profile-bench.json" >"$dest/profile.log" 2>&1
    "$BUN" scripts/kernel-breakdown.ts "$dest/ncu.csv" "$dest/profile-bench.json" >"$dest/kernels.txt" 2>>"$dest/profile.log"
  else
    echo "GPU_PROFILE: no ncu on this host" >"$dest/profile.log"
  fi
fi
t4=$(date +%s)

count() { local n; n=$(grep -Eo "^ *[0-9]+ $1\$" "$log" | tail -1 | tr -dc 0-9); echo "${n:-0}"; }
{
  echo "lora-serve gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(cat .carry/commit 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo ?)"
  echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi unavailable')"
  echo "cublas: $(ldconfig -p 2>/dev/null | grep -o 'libcublas\.so\.1[23] ' | head -1)${LD_LIBRARY_PATH:+ (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)}"
  echo "build: $((t1 - t0)) s; tests: $((t2 - t1)) s; bench: $((t3 - t2)) s; profile: $((t4 - t3)) s; exit status $rc$([ "$rc" = 124 ] && echo ' (timed out)')"
  echo "pass $(count pass) fail $(count fail) skip $(count skip)"
  grep -E '^gpu (ops v2 )?tests:|^SKIP' "$log"
  grep -E '^\(fail\)' "$log"
  grep -E '^TIME ' "$log"
  grep -E '^\((pass|fail)\)' "$log" | grep -Eo '[^>]*\[[0-9.]+m?s\]$' | sed 's/^ */test: /'
  [ -f "$bench" ] && cat "$bench" && tail -3 "$dest/bench.log"
  [ -f "$dest/bench-alt.txt" ] && cat "$dest/bench-alt.txt"
  [ -f "$dest/bench-grammar.txt" ] && cat "$dest/bench-grammar.txt"
  [ -f "$dest/profile.log" ] && echo "profile run's last lines (timed under ncu: not the figures above):" && tail -5 "$dest/profile.log"
} >"$report"
echo "---- $report"
cat "$report"
exit "$rc"
