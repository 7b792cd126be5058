# What the save/restore/migration rows' dom0 scripts share (after dom0_prelude.sh; xtask
# puts the NAME=VALUE lines first): the appliance at $G serves with a vif and writes its
# records to DISK0; one echo connection is held across every operation (`hold_start`,
# `hold_end`); after each operation it must serve (`serves`: /bytes/1048576 checked, and
# GET /state, whose tick counter and clock must never go back); `finish` checks the
# records in the guest, ends the hold, shuts the domU down and checks the records from
# dom0.
G=169.254.100.2
HOLD_STOP=/run/hold.stop
prev_ticks=0
prev_mono=0
# The value of key $2 in the line $1 (`k=v k=v ...`).
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# The body of GET $1 (one line), through the peer.
page() { "$PEER" http-body "$G:80" "$1" --timeout "${2:-30}" | sed -n 's/^peer: http-body: body //p'; }
# GET /state, said as `state LABEL: ...: ok`; ticks and mono_ns must not be below the
# last call's (awk compares: nanoseconds may pass what the shell's arithmetic holds).
state() {
    s=$(page /state)
    t=$(field "$s" ticks)
    m=$(field "$s" mono_ns)
    if [ -z "$t" ] || [ -z "$m" ]; then
        echo "state $1: no answer ($s): FAIL"
        fails=$((fails + 1))
        return 1
    fi
    if awk -v a="$t" -v b="$prev_ticks" -v c="$m" -v d="$prev_mono" \
        'BEGIN { exit !(a + 0 >= b + 0 && c + 0 >= d + 0) }'; then
        echo "state $1: $s: ok"
    else
        echo "state $1: $s: went back (last ticks=$prev_ticks mono_ns=$prev_mono): FAIL"
        fails=$((fails + 1))
    fi
    prev_ticks=$t
    prev_mono=$m
}
# The domU serves after "$1": up, a checked GET /bytes/1048576, GET /state.
serves() {
    if ! up "$G:80"; then
        echo "$1: not serving: FAIL"
        fails=$((fails + 1))
        return 1
    fi
    step "$PEER" http-get "$G:80" /bytes/1048576 --verify-bytes --timeout 120
    state "$1"
}
# Open the held echo connection (in the background) and wait until it has echoed once.
hold_start() {
    rm -f "$HOLD_STOP"
    "$PEER" echo-hold "$G:7" --every-ms 200 --until-file "$HOLD_STOP" --timeout 5000 \
        > /run/hold.log 2>&1 &
    hold_pid=$!
    n=0
    while ! grep -q "echo-hold: connected" /run/hold.log; do
        n=$((n + 1))
        if [ $n -gt 600 ] || ! kill -0 "$hold_pid" 2>/dev/null; then
            echo "the held echo connection never came up: FAIL"
            cat /run/hold.log
            fails=$((fails + 1))
            return 1
        fi
        usleep 200000
    done
    echo "the held echo connection is up: $(grep -o 'local=.*' /run/hold.log)"
}
# End the hold (one more round, then the close) and show its verdict.
hold_end() {
    touch "$HOLD_STOP"
    wait "$hold_pid"
    rc=$?
    grep -v "echo-hold: connected" /run/hold.log
    [ "$rc" = 0 ] || fails=$((fails + 1))
}
# The domU's id under its name now (a restore or a migration makes a new one).
domid_now() { xl domid "$DOMU_NAME" 2>/dev/null; }
# Wait (60 s at most) until the guest says it has written $1 records: the writer adds
# one a second of the guest's time, and the operations take little of it (a saved
# guest's clock stands still), so a quick run may reach the end with only a few.
wait_written() {
    n=0
    while :; do
        w=$(field "$(page /state)" written)
        if [ -n "$w" ] && [ "$w" -ge "$1" ]; then
            echo "records written: $w (at least $1): ok"
            return 0
        fi
        n=$((n + 1))
        if [ $n -gt 60 ]; then
            echo "records written: ${w:-none} after 60 s (at least $1 wanted): FAIL"
            fails=$((fails + 1))
            return 1
        fi
        sleep 1
    done
}
# After the operations: enough records written, the records checked in the guest, the
# hold ended, the domU shut down (120 s at most), and the records checked from dom0.
finish() {
    wait_written 5
    r=$(page /records 120)
    echo "records in the guest: $r"
    [ "$(field "$r" pass)" = 1 ] || fails=$((fails + 1))
    hold_end
    t=$(now_ms)
    DOMID=$(domid_now)
    timeout 120 xl shutdown -w "$DOMID" > /run/shutdown.log 2>&1
    echo "xl shutdown -w $DOMID: status $? after $(($(now_ms) - t)) ms"
    step "$PEER" disk-records "$DISK0" --min 3
}
