#!/bin/bash
# The lever comparison of model/weights/README.md: small runs from scratch that differ in one
# setting each (300 steps x 4 x 512 tokens), then bits per byte and next-line match of each on
# held-out scripts. Resumable: a finished run is skipped.
#   training/levers.sh CORPUS HELD_OUT_SCRIPTS OUT
set -euo pipefail
corpus=$1 holdout=$2 out=$3
mkdir -p "$out"
common=(--seq-len 512 --batch-size 4 --steps 300 --lr 2e-3 --warmup 30 --eval-every 300 --save-every 50 --seed 0 --no-progress)
run() {
    local name=$1 data=$2; shift 2
    [ -f "$out/$name.done" ] && return
    python -m bashlsp.training.pretrain "$data" --out "$out/$name" "${common[@]}" "$@" >> "$out/$name.log" 2>&1
    touch "$out/$name.done"
}
if [ ! -d "$out/corpus-no-tldr" ]; then  # the same corpus without the tldr snippets
    mkdir -p "$out/corpus-no-tldr"
    cp -r "$corpus/files" "$corpus/manifest.jsonl" "$out/corpus-no-tldr/"
    if [ -f "$corpus/packages.lock" ]; then cp "$corpus/packages.lock" "$out/corpus-no-tldr/"; fi
fi
run base "$corpus" --size nano --vocab-size 8192 --fim-rate 0.5
run fim0 "$corpus" --size nano --vocab-size 8192 --fim-rate 0.0
run vocab4k "$corpus" --size nano --vocab-size 4096 --fim-rate 0.5
run vocab16k "$corpus" --size nano --vocab-size 16384 --fim-rate 0.5
run notldr "$out/corpus-no-tldr" --size nano --vocab-size 8192 --fim-rate 0.5
run tiny "$corpus" --size tiny --vocab-size 8192 --fim-rate 0.5
for name in base fim0 vocab4k vocab16k notldr tiny; do
    bashlsp eval "$holdout" --checkpoint "$out/$name/final" --json --device cpu --max-files 50 \
        --lines-per-file 10 --ksr-chars 0 --generations 0 > "$out/$name.eval.json"
    python -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], d['checkpoint']['num_params'], 'bpb %.3f' % d['bpb']['bpb'], 'EM %.3f' % d['next_line']['exact_match'], 'ES %.3f' % d['next_line']['edit_similarity'])" "$out/$name.eval.json" "$name"
done
