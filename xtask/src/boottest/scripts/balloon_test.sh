# dom0's side of the boot test `domu-balloon` (run by the box next to the domU, with
# DOMID and PEER set; xtask puts SHUTDOWN_WITHIN and HEAP_FNV before it): the appliance
# (256 MiB, `heap-probe`) follows `xl mem-set` down to 96 MiB, back to 256 MiB, then to
# 8 MiB, which is below its floor, and back to 256 MiB; it serves after each change.
# After dom0_prelude.sh (step, the $PEER check, now_ms, alive, up).
G=169.254.100.2
if ! up "$G:80"; then
    exit $((fails + 1))
fi
# The domain's memory as `xl list` shows it (MiB, the third column).
mem() { xl list "$DOMID" 2>/dev/null | awk 'NR==2 {print $3}'; }
key() { xenstore-read "/local/domain/$DOMID/$1" 2>/dev/null; }
echo "before: xl list shows $(mem) MiB, memory/target=$(key memory/target) static-max=$(key memory/static-max)"
# mem_set MIB WITHIN_S: `xl mem-set` to MIB, then wait (WITHIN_S at most) for `xl list`
# to show MIB (+-2); a line saying how long it took.
mem_set() {
    t0=$(now_ms)
    if ! xl mem-set "$DOMID" "${1}m"; then
        echo "mem-set $1: xl mem-set failed: FAIL"
        return 1
    fi
    while :; do
        m=$(mem)
        ms=$(($(now_ms) - t0))
        if [ -n "$m" ] && [ "$m" -ge $(($1 - 2)) ] && [ "$m" -le $(($1 + 2)) ]; then
            echo "mem-set $1: xl list shows $m MiB after $ms ms (limit $2 s): ok"
            return 0
        fi
        if [ "$ms" -gt $(($2 * 1000)) ]; then
            echo "mem-set $1: xl list shows ${m:-nothing} MiB after $ms ms (limit $2 s): FAIL"
            return 1
        fi
        usleep 200000
    done
}
step mem_set 96 20
step "$PEER" http-get "$G:80" /bytes/67108864 --verify-bytes --timeout 300
step mem_set 256 60
# 150 MiB of heap in the guest: 200, `heap: 150 MiB ok`.
step "$PEER" http-get "$G:80" /heap/150 --expect-file "17:$HEAP_FNV" --timeout 300
# Below the floor: the guest goes as low as it can and says how far it is short.
t0=$(now_ms)
step xl mem-set "$DOMID" 8m
short=""
while [ $(($(now_ms) - t0)) -lt 60000 ]; do
    short=$(key data/balloon/shortfall_kb)
    [ -n "$short" ] && [ "$short" -gt 0 ] && break
    usleep 200000
done
if [ -n "$short" ] && [ "$short" -gt 0 ]; then
    # Xen's count agrees with the guest's: the target plus the shortfall (+-2 MiB).
    want=$(((8192 + short) / 1024))
    m=$(mem)
    if [ -n "$m" ] && [ "$m" -ge $((want - 2)) ] && [ "$m" -le $((want + 2)) ]; then
        echo "mem-set 8: shortfall_kb=$short after $(($(now_ms) - t0)) ms, xl list shows $m MiB (8 + shortfall: $want): ok"
    else
        echo "mem-set 8: shortfall_kb=$short but xl list shows ${m:-nothing} MiB, not 8 + shortfall ($want): FAIL"
        fails=$((fails + 1))
    fi
else
    echo "mem-set 8: data/balloon/shortfall_kb=${short:-absent} after 60 s: FAIL"
    fails=$((fails + 1))
fi
# It keeps serving at its floor.
step "$PEER" http-get "$G:80" /bytes/1048576 --verify-bytes --timeout 120
step "$PEER" tcp-echo "$G:7" --bytes 262144 --timeout 120
# Up again from the floor (frames of mapped chunks this time: their direct-map entries
# are written back), the shortfall back to 0, and the heap probe once more.
step mem_set 256 60
short=$(key data/balloon/shortfall_kb)
if [ "$short" = 0 ]; then
    echo "back to 256: shortfall_kb=0: ok"
else
    echo "back to 256: shortfall_kb=${short:-absent}: FAIL"
    fails=$((fails + 1))
fi
step "$PEER" http-get "$G:80" /heap/150 --expect-file "17:$HEAP_FNV" --timeout 300
xl shutdown "$DOMID" > /run/shutdown.log 2>&1 &
stopped_within "$(now_ms)" "xl shutdown"
exit "$fails"
