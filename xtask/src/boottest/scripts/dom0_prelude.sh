# The functions the issue-24 dom0 scripts share (xtask puts this before each, after
# the NAME=VALUE lines; DOMID and PEER are set by the box).
fails=0
# Run a step; a failure is reported and counted in `fails` (the script's exit status).
step() {
    if "$@"; then :; else echo "step failed ($?): $*"; fails=$((fails + 1)); fi
}
# Without the client program every step would fail anyway; say it once, and never let
# an empty file (which sh would run as an empty script, status 0) pass.
if [ ! -s "$PEER" ] || [ ! -x "$PEER" ]; then
    echo "no xenbox-peer in dom0 ($PEER): FAIL"
    exit 1
fi
# Milliseconds since dom0 booted (busybox's date has no %N).
now_ms() { read -r up _ < /proc/uptime; s=${up%.*}; c=${up#*.}; echo $((s * 1000 + ${c#0} * 10)); }
# Whether the domU still runs (not shut down, crashed or gone).
alive() {
    state=$(xl list "$DOMID" 2>/dev/null | awk 'NR==2 {print $5}')
    case "$state" in *s*|*c*|"") return 1 ;; esac
    return 0
}
# Wait (300 s at most) for HOST:PORT to accept, giving up at once if the domU stopped.
up() {
    n=0
    while [ $n -lt 30 ]; do
        "$PEER" wait-up "$1" --timeout 10 && return 0
        alive || { echo "the domU stopped (state ${state:-gone}) before $1 was up"; return 1; }
        n=$((n + 1))
    done
    return 1
}
# After an `xl shutdown` issued at $1 (now_ms): wait for the domU to stop (watching for
# 3x SHUTDOWN_WITHIN s, to say how long it took) and report it as "$2: the domU …",
# a FAIL counted in `fails` past SHUTDOWN_WITHIN s.
stopped_within() {
    t0=$1
    while alive && [ $(($(now_ms) - t0)) -lt $((SHUTDOWN_WITHIN * 3000)) ]; do
        usleep 100000
    done
    ms=$(($(now_ms) - t0))
    if alive; then
        echo "$2: the domU still runs after $ms ms (limit ${SHUTDOWN_WITHIN} s): FAIL"
        fails=$((fails + 1))
    elif [ "$ms" -gt $((SHUTDOWN_WITHIN * 1000)) ]; then
        echo "$2: the domU stopped after $ms ms (state $state, limit ${SHUTDOWN_WITHIN} s): FAIL"
        fails=$((fails + 1))
    else
        echo "$2: the domU stopped after $ms ms (state $state, limit ${SHUTDOWN_WITHIN} s): ok"
    fi
}
