#!/bin/bash
# repl_test.sh: `weft repl` in a real terminal (tmux) and with a pipe.
#  - pipe: lines run in order without prompts; values, multi-line chunks,
#    errors with their kind, secrets printed as handles; loaded secret
#    values redacted from everything printed; the exit status is 1 when a
#    line failed (an error, a compile error, input ending inside a chunk, an
#    unknown or failing command, a line cancelled by SIGINT), 0 otherwise;
#    streamed text that ends mid-line is ended before the next output;
#  - terminal (`weft repl --mock` in tmux): a completion call returns text;
#    a multi-line function; tab completion (weft.mod<TAB>; after a colon only
#    methods, up the __index chain; an __index function is never called);
#    Ctrl-C cancels a slow call and the prompt comes back; streamed text
#    shows as it arrives and the next prompt starts on a fresh line; history
#    persists across two sessions; :reload after editing a plugin file
#    changes the answer; a table holding a secret handle prints without the
#    value; errors at a terminal leave the exit status 0.
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
pipe_rc=$?
check "piped lines run in order; an expression prints its value" grep -qx '42' "$dir/pipe.out"
check "a multi-line function over a pipe" grep -qx '"hi!"' "$dir/pipe.out"
check "an error prints kind and message" grep -qx 'error: rate_limited: slow down' "$dir/pipe.out"
check "a secret handle prints as <secret NAME>" grep -qx '{ key = <secret piped>, n = 1 }' "$dir/pipe.out"
check "a waiting call works at top level" grep -qx '"slept"' "$dir/pipe.out"
check "unknown commands are reported" grep -q 'unknown command :nope' "$dir/pipe.out"
check "an error says where in the line it was raised" grep -qx 'error: stdin:1: boom' "$dir/pipe.out"
check ":trace shows its traceback" grep -q "stdin:1: in function" "$dir/pipe.out"
check "no prompt without a terminal" bash -c "! grep -q '^> ' '$dir/pipe.out'"
check "... and lines that raised make the exit status 1" [ "$pipe_rc" = 1 ]

# the exit status of piped input: 1 when a line failed, after all of them ran
status_of() { # lines...: prints the REPL's exit status; its output is in status.out
    printf '%s\n' "$@" | WEFT_LOG=off "$WEFT" repl --no-history > "$dir/status.out" 2>&1
    echo $?
}
check "piped: a line that raises -> exit status 1" [ "$(status_of 'error("x")' 'print("ran on")')" = 1 ]
check "... every line ran and the error printed" \
    bash -c "grep -qx 'error: stdin:1: x' '$dir/status.out' && grep -qx 'ran on' '$dir/status.out'"
check "piped: all lines fine -> 0" [ "$(status_of 'x = 1' 'x + 1' 'print(x)' ':help' '')" = 0 ]
check "piped: a line that does not compile -> 1" [ "$(status_of 'x = = 1' 'print(2)')" = 1 ]
check "piped: input ending inside a chunk -> 1" [ "$(status_of 'print(1)' 'function f()' '  return 1')" = 1 ]
check "... and the unfinished chunk is reported" grep -q "^error: stdin:2: 'end' expected" "$dir/status.out"
check "piped: an unknown command -> 1" [ "$(status_of ':nope')" = 1 ]
check "piped: a command that fails -> 1" [ "$(status_of ':log bogus')" = 1 ]
check "piped: :time of a line that raises -> 1" [ "$(status_of ':time error("t")')" = 1 ]
# a line cancelled by SIGINT: the REPL goes on with the next line, status 1
# (a REPL that died early fails the checks; writing to it must not kill us)
mkfifo "$dir/in"
WEFT_LOG=off "$WEFT" repl --no-history < "$dir/in" > "$dir/int.out" 2>&1 &
rpid=$!
trap '' PIPE
exec 3> "$dir/in"
printf '%s\n' 'print("sleeping"); io.stdout:flush(); weft.sleep(60)' >&3
for _ in $(seq 100); do grep -q sleeping "$dir/int.out" && break; sleep 0.1; done
kill -INT "$rpid"
printf '%s\n' 'print("after")' >&3
exec 3>&-
for _ in $(seq 100); do kill -0 "$rpid" 2> /dev/null || break; sleep 0.1; done
kill -9 "$rpid" 2> /dev/null
wait "$rpid"
check "piped: a line cancelled by SIGINT -> 1" [ $? = 1 ]
trap - PIPE
check "... the REPL went on with the next line" \
    bash -c "grep -qx cancelled '$dir/int.out' && grep -qx after '$dir/int.out'"

# streamed text without a final newline is ended before the REPL prints on;
# a line that ended its output prints no blank line
printf '%s\n' 'm = weft.model("gpt")' 'r = m:stream("a b c", function(ev) io.write(ev.text) end)' 'print("next")' \
    'm:stream("x y", function(ev) io.stdout:write(ev.text) end).text' 'local _ = io.write("whole line\n")' \
    'print("then this")' | WEFT_LOG=off "$WEFT" repl --mock --no-history > "$dir/stream.out" 2>&1
printf '%s\n' 'echo: a b c' 'next' 'echo: x y' '"echo: x y"' 'whole line' 'then this' > "$dir/stream.want"
check "streamed text is followed by a newline before the next output" diff "$dir/stream.want" "$dir/stream.out"
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
check "piped commands that all succeed -> exit status 0" [ $? = 0 ]
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
    # 1: the REPL's status for the line that raised (memcheck's errors are 99)
    check "the REPL under memcheck: no errors, no definite leaks" [ $? = 1 ]
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
    # (after kill-session of the last session the tmux server exits; a
    # new-session racing that exit fails with "server exited
    # unexpectedly": wait for the old server to go, and try again)
    local i
    for i in $(seq 50); do T list-sessions > /dev/null 2>&1 || break; sleep 0.1; done
    for i in 1 2 3 4 5; do
        T -f /dev/null new-session -d -s repl -x 160 -y 50 \
            "cd '$dir' && XDG_STATE_HOME='$dir/state' WEFT_LOG=off WEFT_CANARY_KEY='$WEFT_CANARY_KEY' '$WEFT' repl --mock --plugins '$dir/plugins'; echo REPL-EXITED rc=\$?; sleep 30" &&
            return 0
        sleep 0.2
    done
    return 1
}
screen() { T capture-pane -t repl -p -S -200; }
# checks on the screen run here: `bash -c` would not see screen() (and a
# negated grep there passed whatever the screen held)
not_on_screen() { ! screen | grep -q "$@"; }
line_after() { # pattern, line: the line after the first one matching pattern is line
    [ "$(screen | grep -m1 -A1 -- "$1" | tail -n 1)" = "$2" ]
}
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
# own fields shape (data) and shout (a method); through __index greet and
# grade; one level further up bark and bass
type_line 'obj = setmetatable({ shape = 1, shout = print }, { __index = setmetatable({ greet = print, grade = 2 }, { __index = { bark = print, bass = 3 } }) })'
complete() { # typed, expected line, what
    T send-keys -t repl -l "$1"
    T send-keys -t repl Tab
    check "tab completion: $3" wait_for "^> $2\$" 50
    T send-keys -t repl C-u
}
complete 'obj:sh' 'obj:shout' "after a colon only methods: obj:sh<TAB> -> obj:shout (not shape)"
complete 'obj:gr' 'obj:greet' "... a method through __index: obj:gr<TAB> -> obj:greet (not grade)"
complete 'obj:ba' 'obj:bark' "... one up the __index chain: obj:ba<TAB> -> obj:bark (not bass)"
complete 'obj.sha' 'obj\.shape' "after a dot data fields too: obj.sha<TAB> -> obj.shape"
complete 'obj.gra' 'obj\.grade' "... through __index: obj.gra<TAB> -> obj.grade"
complete 'obj.bas' 'obj\.bass' "... up the chain: obj.bas<TAB> -> obj.bass"
# completion reads with raw access: an __index function is not called (it
# raised outside any protected call: the REPL died of a Lua panic)
type_line 'weird = setmetatable({}, { __index = function() error("no") end })'
for typed in 'weird.' 'weird:' 'weird.x.'; do
    T send-keys -t repl -l "$typed"
    T send-keys -t repl Tab
    T send-keys -t repl C-u
done
type_line '"still here"'
check "completing on a table whose __index is a function that raises" wait_for '^"still here"$' 50
type_line 'weft.sleep(60); print("not cancelled")'
sleep 0.5
T send-keys -t repl C-c
check "Ctrl-C cancels a slow call" wait_for '^cancelled$' 50
type_line '6 * 7'
check "... and the prompt comes back" wait_for '^42$' 50
check "... the call did not finish" not_on_screen -x 'not cancelled'
type_line 'sr = weft.model("gpt"):stream("streamed here", function(ev) io.write(ev.text) end)'
check "streamed text without a newline: the next prompt starts on a fresh line" \
    wait_for '^echo: streamed here$' 50
type_line 'io.write("partial"); weft.sleep(60)'
check "a piece of a line written shows before the line ends" wait_for '^partial' 50
T send-keys -t repl C-c
check "... Ctrl-C cancels it" wait_for '^cancelled$' 50
check "... with no blank line between (the ^C echo ended the line)" \
    line_after '^partial' cancelled
type_line 'error("tty boom")'
check "an error at the terminal" wait_for '^error: stdin:1: tty boom$' 50
T send-keys -t repl -l 'print("typed but dropped")'
T send-keys -t repl C-c
type_line '1 + 2'
check "Ctrl-C at the prompt drops the line being typed" wait_for '^3$' 50
check "... without running it" not_on_screen -x 'typed but dropped'
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
check "... never the value" not_on_screen -F -- "$WEFT_CANARY_KEY"
type_line 'histmarker = 1234'
T send-keys -t repl C-d
check "Ctrl-D quits" wait_for 'REPL-EXITED' 50
check "... with exit status 0 at a terminal, errors or not" wait_for 'REPL-EXITED rc=0' 10
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
