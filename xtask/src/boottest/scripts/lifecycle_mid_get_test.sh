# dom0's side of the boot test `domu-shutdown-mid-get` (run by the box next to the domU,
# with DOMID and PEER set; xtask puts SHUTDOWN_WITHIN and CUT_WITHIN before it): a GET of
# 256 MiB (the largest the appliance serves) runs; once 256 KiB of it came, `xl shutdown`. The domU must stop within
# SHUTDOWN_WITHIN s, and the client must see its connection cut (reset or closed, the
# bytes so far right: the peer's --expect-cut) within CUT_WITHIN s of the request, not
# hang until its own timeout.
# After dom0_prelude.sh (step, the $PEER check, now_ms, alive, up, stopped_within).
G=169.254.100.2
if ! up "$G:80"; then
    exit $((fails + 1))
fi
# The client's status goes to a file when it ends (a finished child the shell has not
# reaped yet would still answer `kill -0`).
rm -f /run/get-started /run/get.rc
(
    "$PEER" http-get "$G:80" /bytes/268435456 --verify-bytes --expect-cut \
        --started-file /run/get-started --timeout 300
    echo $? > /run/get.rc
) &
get=$!
t=$(now_ms)
while [ ! -s /run/get-started ] && [ ! -s /run/get.rc ] \
    && [ $(($(now_ms) - t)) -lt 120000 ]; do
    usleep 50000
done
if [ ! -s /run/get-started ]; then
    echo "the GET never started: FAIL"
    kill "$get" 2>/dev/null
    exit $((fails + 1))
fi
echo "the GET: $(cat /run/get-started) bytes in, xl shutdown now"
t0=$(now_ms)
xl shutdown "$DOMID" > /run/shutdown.log 2>&1 &
stopped_within "$t0" "xl shutdown mid-GET"
while [ ! -s /run/get.rc ] && [ $(($(now_ms) - t0)) -lt $((CUT_WITHIN * 1000)) ]; do
    usleep 50000
done
if [ ! -s /run/get.rc ]; then
    echo "the GET still runs $(($(now_ms) - t0)) ms after xl shutdown (limit ${CUT_WITHIN} s): FAIL"
    kill "$get" 2>/dev/null
    fails=$((fails + 1))
else
    echo "the GET ended $(($(now_ms) - t0)) ms after xl shutdown (limit ${CUT_WITHIN} s): ok"
fi
wait "$get"
[ "$(cat /run/get.rc 2>/dev/null)" = 0 ] || { echo "step failed: http-get --expect-cut"; fails=$((fails + 1)); }
exit "$fails"
