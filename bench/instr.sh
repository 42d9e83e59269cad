# bench/instr.sh: instructions per unit of work, counted by valgrind's
# callgrind and differenced over two sizes so start-up and tear-down drop
# out. Sourced by the benchmarks' run.sh.
#   instr_per_unit N1 N2 CMD ARGS...   (an argument "@N" is replaced by the size)
# Prints the instructions per unit, or nothing when valgrind is missing.
instr_per_unit() {
    local n1=$1 n2=$2
    shift 2
    command -v valgrind > /dev/null || return 0
    local log counts=() n
    log=$(mktemp)
    for n in "$n1" "$n2"; do
        local args=() a
        for a in "$@"; do [ "$a" = "@N" ] && args+=("$n") || args+=("$a"); done
        timeout 900 valgrind --tool=callgrind --callgrind-out-file=/dev/null "${args[@]}" > /dev/null 2> "$log"
        counts+=("$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$log")")
    done
    rm -f "$log"
    echo $(( (counts[1] - counts[0]) / (n2 - n1) ))
}
