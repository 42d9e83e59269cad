#!/bin/bash
# repl_test.sh: `weft repl` in a real terminal (tmux) and with a pipe.
#  - pipe: lines run in order without prompts; values, multi-line chunks,
#    errors with their kind, secrets printed as handles; loaded secret
#    values redacted from everything printed;
#  - terminal (`weft repl --mock` in tmux): a completion call returns text;
#    a multi-line function; tab completion (weft.mod<TAB>); Ctrl-C cancels a
#    slow call and the prompt comes back; history persists across two
#    sessions; :reload after editing a plugin file changes the answer; a
#    table holding a secret handle prints without the value.
set -u
: "${WEFT:?run through ctest}" "${WEFT_CANARY_KEY:?run through ctest}" "${WEFT_SOURCE_DIR:?run through ctest}"
command -v tmux > /dev/null || { echo "tmux missing (scripts/deps.sh installs it)"; exit 77; }
dir=$(mktemp -d)
sock="$dir/tmux.sock"
T() { tmux -S "$sock" "$@"; }
cleanup() { T kill-server 2> /dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fails=0 n=0
check() {
    n=$((n + 1))
    if "${@:2}"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fails=$((fails + 1)); fi
}

# ---- a pipe
printf '%s\n' 'x = 20 + 1' 'x * 2' 'function f(a)' '  return a .. "!"' 'end' 'f("hi")' \
    'error(weft.error.new("rate_limited", "slow down"))' \
    '{ key = weft.secrets.value("piped", os.getenv("WEFT_CANARY_KEY")), n = 1 }' \
    'weft.sleep(0.01) or "slept"' ':nope' 'error("boom")' ':trace' \
    | WEFT_LOG=off "$WEFT" repl --no-history > "$dir/pipe.out" 2>&1
check "piped lines run in order; an expression prints its value" grep -qx '42' "$dir/pipe.out"
check "a multi-line function over a pipe" grep -qx '"hi!"' "$dir/pipe.out"
check "an error prints kind and message" grep -qx 'error: rate_limited: slow down' "$dir/pipe.out"
check "a secret handle prints as <secret NAME>" grep -qx '{ key = <secret piped>, n = 1 }' "$dir/pipe.out"
check "a waiting call works at top level" grep -qx '"slept"' "$dir/pipe.out"
check "unknown commands are reported" grep -q 'unknown command :nope' "$dir/pipe.out"
check "an error says where in the line it was raised" grep -qx 'error: stdin:1: boom' "$dir/pipe.out"
check ":trace shows its traceback" grep -q "stdin:1: in function" "$dir/pipe.out"
check "no prompt without a terminal" bash -c "! grep -q '^> ' '$dir/pipe.out'"
# every printed text is redacted: a value, print, an error, its traceback,
# a compile error quoting the line, :metrics, a value with a quote and a tab
# (which %q would escape past redaction)
printf '%s\n' 'key = weft.secret("env:WEFT_CANARY_KEY")' 'os.getenv("WEFT_CANARY_KEY")' \
    'print("raw:", os.getenv("WEFT_CANARY_KEY"))' '{ auth = "Bearer " .. os.getenv("WEFT_CANARY_KEY") }' \
    'error("failed with " .. os.getenv("WEFT_CANARY_KEY"))' ':trace' \
    "\"$WEFT_CANARY_KEY\" \"$WEFT_CANARY_KEY\"" \
    'weft.metrics.counter("repl_keyed_total", "Keyed.", { "key" }):inc(1, os.getenv("WEFT_CANARY_KEY"))' \
    ':metrics repl_keyed_total{' 'q = weft.secrets.value("quoted", "wq\"uo\tte-Zx81")' '"wq\"uo\tte-Zx81"' \
    | WEFT_LOG=off "$WEFT" repl --no-history > "$dir/redact.out" 2>&1
S='<secret env:WEFT_CANARY_KEY>'
check "a loaded secret's value never prints" bash -c "! grep -qF -- '$WEFT_CANARY_KEY' '$dir/redact.out'"
check "... an expression's value reads <secret NAME>" grep -qxF "\"$S\"" "$dir/redact.out"
check "... so does print in a line" grep -qxF "raw:	$S" "$dir/redact.out"
check "... and a string in a table" grep -qxF "{ auth = \"Bearer $S\" }" "$dir/redact.out"
check "... an error message" grep -qxF "error: stdin:1: failed with $S" "$dir/redact.out"
check "... a compile error quoting the line" grep -qF "near '\"$S\"'" "$dir/redact.out"
check "... :metrics" grep -qxF "repl_keyed_total{key=\"$S\"} 1" "$dir/redact.out"
check "... a value %q would escape" bash -c "grep -qx '\"<secret quoted>\"' '$dir/redact.out' && ! grep -q 'te-Zx81' '$dir/redact.out'"
printf '%s\n' ':models' 'weft.model("claude"):complete("hi").usage' ':limits' ':metrics weft_calls_total{' \
    ':time weft.sleep(0.05)' ':log warn' ':plugins' ':quit' 'print("after quit")' \
    | WEFT_LOG=off "$WEFT" repl --mock --no-history > "$dir/cmds.out" 2>&1
check ":models lists the mock's providers and aliases" grep -q '^model    claude       = anthropic/claude-3-5-haiku-latest' "$dir/cmds.out"
check "a call through the mock at the prompt" grep -qx '{ input = 4, output = 3 }' "$dir/cmds.out"
check ":limits shows each provider's limiter" grep -q '^anthropic .*admitted 1' "$dir/cmds.out"
check ":metrics filters the exposition" grep -q '^weft_calls_total{provider="anthropic",model="claude-3-5-haiku-latest",operation="complete",outcome="success"} 1$' "$dir/cmds.out"
check ":time prints how long the line took (at least the sleep)" \
    awk '/ ms$/ { if ($1 >= 50) found = 1 } END { exit !found }' "$dir/cmds.out"
check ":log sets the level" grep -qx 'log level warn' "$dir/cmds.out"
check ":plugins lists loaded plugins with versions" grep -q '^provider/anthropic *version 1.0.0' "$dir/cmds.out"
check ":quit ends the REPL" bash -c "! grep -q 'after quit' '$dir/cmds.out'"

# the same two runs under memcheck (plain builds): the REPL's C side leaks nothing
if [ -n "${WEFT_MEMCHECK:-}" ]; then
    printf '%s\n' 'x = 1' 'function f()' 'return x' 'end' 'f()' ':models' 'weft.model("gpt"):complete("hi").text' \
        'weft.model("claude"):stream("a b", function() end).text' ':limits' 'error("boom")' \
        | WEFT_LOG=off "$WEFT_MEMCHECK" -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
            "$WEFT" repl --mock --no-history > "$dir/vg.out" 2>&1
    check "the REPL under memcheck: no errors, no definite leaks" [ $? = 0 ]
    check "... and it ran the lines" grep -qx '"echo: a b"' "$dir/vg.out"
fi

# ---- a terminal
mkdir -p "$dir/plugins/providers" "$dir/state"
mk_plugin() { # version: the mistral example with its answers tagged
    sed "s/text = str(c.message.content) or \"\"/text = \"$1 \" .. (str(c.message.content) or \"\")/" \
        "$WEFT_SOURCE_DIR/examples/plugins/providers/mistral.lua" > "$dir/plugins/providers/.tagged.tmp"
    mv "$dir/plugins/providers/.tagged.tmp" "$dir/plugins/providers/mistral.lua"
}
mk_plugin v1
start() {
    T -f /dev/null new-session -d -s repl -x 160 -y 50 \
        "cd '$dir' && XDG_STATE_HOME='$dir/state' WEFT_LOG=off WEFT_CANARY_KEY='$WEFT_CANARY_KEY' '$WEFT' repl --mock --plugins '$dir/plugins'; echo REPL-EXITED; sleep 30"
}
screen() { T capture-pane -t repl -p -S -200; }
type_line() { T send-keys -t repl -l "$1"; T send-keys -t repl Enter; }
wait_for() { # pattern, tenths of a second
    for _ in $(seq "$2"); do screen | grep -q -- "$1" && return 0; sleep 0.1; done
    return 1
}
start
wait_for 'Mock provider at' 100 || { echo "the REPL did not start"; screen; exit 1; }

type_line 'weft.model("gpt"):complete("hello from the terminal").text'
check "a completion call returns text" wait_for '^"echo: hello from the terminal"$' 100
type_line 'function twice(s)'
type_line '  return s .. s'
type_line 'end'
type_line 'twice("ab")'
check "a multi-line function definition" wait_for '^"abab"$' 50
T send-keys -t repl -l 'weft.mod'
T send-keys -t repl Tab
check "tab completion: weft.mod<TAB> -> weft.model" wait_for '^> weft\.model$' 50
T send-keys -t repl C-u
type_line 'weft.sleep(60); print("not cancelled")'
sleep 0.5
T send-keys -t repl C-c
check "Ctrl-C cancels a slow call" wait_for '^cancelled$' 50
type_line '6 * 7'
check "... and the prompt comes back" wait_for '^42$' 50
check "... the call did not finish" bash -c "! screen | grep -q 'not cancelled'"
T send-keys -t repl -l 'print("typed but dropped")'
T send-keys -t repl C-c
type_line '1 + 2'
check "Ctrl-C at the prompt drops the line being typed" wait_for '^3$' 50
check "... without running it" bash -c "! screen | grep -qx 'typed but dropped'"
type_line 'ticks = 0; weft.spawn(function() while true do ticks = ticks + 1; weft.sleep(0.02) end end)'
sleep 1 # at the prompt: the loop keeps turning
type_line 'ticks >= 20'
check "a background task progresses while the prompt waits" wait_for '^true$' 50
type_line 'weft.configure { providers = { mistral = { base_url = mock.url, secret = weft.secrets.value("mk", weft.mock.DEFAULT_KEYS.openai) } } }'
type_line 'weft.model("mistral/small"):complete("ping").text'
check "a plugin from --plugins answers" wait_for '^"v1 echo: ping"$' 50
mk_plugin v2
type_line ':reload mistral'
check ":reload after editing the plugin file" wait_for 'provider/mistral *\(reloaded\|unchanged\)' 50
type_line 'weft.model("mistral/small"):complete("pong").text'
check "... changes the answer" wait_for '^"v2 echo: pong"$' 50
type_line 'creds = { api = weft.secrets.value("canary", os.getenv("WEFT_CANARY_KEY")), user = "me" }'
type_line 'creds'
check "a table holding a secret prints the handle" wait_for '^{ api = <secret canary>, user = "me" }$' 50
check "... never the value" bash -c "! screen | grep -qF -- '$WEFT_CANARY_KEY'"
type_line 'histmarker = 1234'
T send-keys -t repl C-d
check "Ctrl-D quits" wait_for 'REPL-EXITED' 50
T kill-session -t repl
# libedit's history format writes a space as \040
check "history is saved in the state directory" grep -q 'histmarker' "$dir/state/weft/history"

start
wait_for 'Mock provider at' 100 || { echo "the REPL did not start again"; exit 1; }
T send-keys -t repl Up
check "history persists into the next session (Up)" wait_for '^> histmarker = 1234$' 50
T send-keys -t repl C-u
T send-keys -t repl C-d
wait_for 'REPL-EXITED' 50

echo "1..$n"
[ "$fails" = 0 ]
