#!/usr/bin/env bash
# The `prge` command line on the reference model: outputs people and scripts rely on, and exit
# statuses (0 ok, 1 error with "prge: error: ..." on stderr, 2 wrong usage).
# Usage: Tests/cli/test_cli.sh [PRGE] [MODEL]   (defaults: build/bin/prge, the reference model)
set -uo pipefail
cd "$(dirname "$0")/../.."

PRGE=${1:-build/bin/prge}
MODEL=${2:-${PRGE_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok:   $*"; }

# expect_status WANT NAME CMD...: runs CMD with stdout in $TMP/out, stderr in $TMP/err.
expect_status() {
    local want=$1 name=$2; shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    local got=$?
    if [ "$got" -eq "$want" ]; then pass "$name (exit $got)"; else fail "$name: exit $got, expected $want; stderr: $(head -c 300 "$TMP/err")"; fi
}

# check NAME PYTHON-EXPR: the expression over `out` (stdout text) and `j` (stdout as JSON, if it parses).
check() {
    if python3 - "$TMP/out" "$2" <<'PY'
import json, sys
out = open(sys.argv[1], encoding="utf-8", errors="replace").read()
try:
    j = json.loads(out)
except ValueError:
    j = None
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
    then pass "$1"; else fail "$1: $(head -c 300 "$TMP/out")"; fi
}

[ -x "$PRGE" ] || { echo "test_cli: $PRGE is not built (run make)"; exit 1; }
[ -f "$MODEL" ] || { echo "test_cli: no model at $MODEL (run scripts/fetch-model.sh)"; exit 1; }

# Token ids from llama.cpp (../shared/reference/smollm2-135m-q4_1.json).
expect_status 0 "tokenize --json" "$PRGE" tokenize --model "$MODEL" --json "The capital of France is"
check "tokenize ids match llama.cpp" 'j == [504, 3575, 282, 4649, 314]'
expect_status 0 "tokenize --json (2)" "$PRGE" tokenize --model "$MODEL" --json "Once upon a time, there was a"
check "tokenize ids match llama.cpp (2)" 'j == [6403, 1980, 253, 655, 28, 665, 436, 253]'
expect_status 0 "tokenize readable" "$PRGE" tokenize --model "$MODEL" "The capital of France is"
check "tokenize readable shows ids and pieces" '"4649\t\" France\"" in out.splitlines()'
expect_status 0 "tokenize --parse-special" "$PRGE" tokenize -m "$MODEL" --json --parse-special "<|im_start|>user"
check "special text becomes the control token" 'j[0] == 1'
expect_status 0 "tokenize text after --" "$PRGE" tokenize -m "$MODEL" --json -- "-5 degrees"
check "a TEXT starting with '-' after --" 'isinstance(j, list) and len(j) > 1'

expect_status 0 "logits --json" "$PRGE" logits --model "$MODEL" --top 5 --json "The capital of France is"
check "logits JSON: tokens, 5 pairs, top-1 is 7042 ( Paris) at 17.3713" \
    'j["tokens"] == [504, 3575, 282, 4649, 314] and len(j["top"]) == 5 and j["top"][0][0] == 7042 and abs(j["top"][0][1] - 17.371262) < 2e-3'
expect_status 0 "logits readable" "$PRGE" logits -m "$MODEL" --top 3 "The capital of France is"
check "logits readable names the piece" '"Paris" in out'

expect_status 0 "perplexity --json" "$PRGE" perplexity --model "$MODEL" --ctx 128 --json scripts/demo.txt
check "perplexity JSON fields" 'set(j) == {"ppl", "chunks", "ctx"} and j["ctx"] == 128 and j["chunks"] == 2 and 1 < j["ppl"] < 1000'
expect_status 0 "perplexity readable" "$PRGE" perplexity -m "$MODEL" -c 64 scripts/demo.txt
check "perplexity readable" 'out.startswith("perplexity: ")'

expect_status 0 "generate" "$PRGE" generate --model "$MODEL" -n 8 "The capital of France is"
check "generate continues with Paris" 'out.startswith("The capital of France is Paris")'
expect_status 0 "generate sampling" "$PRGE" generate -m "$MODEL" -n 4 --temp 0.8 --top-k 40 --top-p 0.9 --seed 1 "Hello"
cp "$TMP/out" "$TMP/sampled"
expect_status 0 "generate sampling again" "$PRGE" generate -m "$MODEL" -n 4 --temp 0.8 --top-k 40 --top-p 0.9 --seed 1 "Hello"
cmp -s "$TMP/out" "$TMP/sampled" && pass "same seed, same text" || fail "same seed gave different text"

# Help: stdout, exit 0.
# eval scores a task by name, or the task of a training config (a custom template): the config
# that spells out sst2's own template and words must score exactly what --task sst2 does.
cat >"$TMP/rows.jsonl" <<'EOF'
{"sentence": "a gorgeous, witty and moving film", "label": 1}
{"sentence": "the plot is a dull mess", "label": 0}
{"sentence": "one of the year's best", "label": 1}
{"sentence": "tedious and far too long", "label": 0}
EOF
echo '{"task": {"name": "mine", "template": "{sentence} It was", "labels": [" negative", " positive"]}, "lr": 0.01}' >"$TMP/task.json"
echo '{"task": {"name": "mine", "template": "{sentence} Overall:", "labels": [" negative", " positive"]}}' >"$TMP/other.json"
expect_status 0 "eval --task sst2" "$PRGE" eval --model "$MODEL" --task sst2 --data "$TMP/rows.jsonl" --json
cp "$TMP/out" "$TMP/builtin.json"
check "eval JSON fields" 'set(j) == {"accuracy", "n", "loss"} and j["n"] == 4 and 0 < j["loss"] < 5'
expect_status 0 "eval --config with sst2's template" "$PRGE" eval --model "$MODEL" --config "$TMP/task.json" --data "$TMP/rows.jsonl" --json
check "a config's task scores as the built-in one" "j == json.load(open('$TMP/builtin.json'))"
expect_status 0 "eval --config with another template" "$PRGE" eval --model "$MODEL" --config "$TMP/other.json" --data "$TMP/rows.jsonl" --json
check "another template scores differently" "j['loss'] != json.load(open('$TMP/builtin.json'))['loss']"
expect_status 0 "eval --task overrides the config's" "$PRGE" eval --model "$MODEL" --config "$TMP/other.json" --task sst2 --data "$TMP/rows.jsonl" --json
check "--task wins over the config" "j == json.load(open('$TMP/builtin.json'))"

expect_status 0 "help" "$PRGE" help
check "help lists the commands" 'all(c in out for c in ["tokenize", "logits", "perplexity", "generate"])'
expect_status 0 "help generate" "$PRGE" help generate
check "command help" 'out.startswith("usage: prge generate")'
expect_status 0 "logits --help" "$PRGE" logits --help
check "--help" 'out.startswith("usage: prge logits")'

# Wrong usage: exit 2 with a message.
expect_status 2 "no command" "$PRGE"
expect_status 2 "unknown command" "$PRGE" frobnicate
expect_status 2 "missing --top" "$PRGE" logits --model "$MODEL" "text"
grep -q "missing --top" "$TMP/err" && pass "says what is missing" || fail "no 'missing --top' in: $(cat "$TMP/err")"
expect_status 2 "--top not a number" "$PRGE" logits --model "$MODEL" --top abc "text"
expect_status 2 "--top 0" "$PRGE" logits --model "$MODEL" --top 0 "text"
expect_status 2 "unknown option" "$PRGE" tokenize --model "$MODEL" --frob "text"
expect_status 2 "two texts" "$PRGE" tokenize --model "$MODEL" one two
expect_status 2 "no text" "$PRGE" tokenize --model "$MODEL"
expect_status 2 "option given twice" "$PRGE" tokenize --model "$MODEL" --json --json "text"
expect_status 2 "value missing at the end" "$PRGE" generate "text" --model
expect_status 2 "--top-k without --temp" "$PRGE" generate --model "$MODEL" --top-k 5 "text"
expect_status 2 "bad --mode" "$PRGE" logits --model "$MODEL" --top 1 --mode fp8 "text"
expect_status 2 "eval without a task" "$PRGE" eval --model "$MODEL" --data "$TMP/rows.jsonl"
grep -q "missing --task" "$TMP/err" && pass "says the task is missing" || fail "message: $(cat "$TMP/err")"
expect_status 2 "--ctx too small" "$PRGE" perplexity --model "$MODEL" --ctx 2 scripts/demo.txt

# Errors: exit 1 with "prge: error: ..." naming the problem.
expect_status 1 "missing model" "$PRGE" logits --model "$TMP/nope.gguf" --top 1 "text"
grep -q "^prge: error: .*nope.gguf" "$TMP/err" && pass "message names the model file" || fail "message: $(cat "$TMP/err")"
echo "not a gguf" >"$TMP/bad.gguf"
expect_status 1 "not a GGUF file" "$PRGE" tokenize --model "$TMP/bad.gguf" "text"
grep -q "^prge: error: " "$TMP/err" && pass "message for a bad file" || fail "message: $(cat "$TMP/err")"
expect_status 1 "missing text file" "$PRGE" perplexity --model "$MODEL" --ctx 64 "$TMP/none.txt"
expect_status 1 "text too short for the context" "$PRGE" perplexity --model "$MODEL" --ctx 512 scripts/demo.txt
grep -q "needs at least 1024" "$TMP/err" && pass "says how many tokens are needed" || fail "message: $(cat "$TMP/err")"
expect_status 1 "missing adapter" "$PRGE" generate --model "$MODEL" --adapter "$TMP/none.gguf" "text"

if [ "$failures" -gt 0 ]; then echo "test_cli: $failures failed"; exit 1; fi
echo "test_cli: all passed"
