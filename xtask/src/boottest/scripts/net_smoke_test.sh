# dom0's side of the boot test `domu-net-smoke` (run by the box next to the domU, with
# DOMID and PEER set; xtask puts SHUTDOWN_WITHIN and BYTES, the size of GET /bytes/N,
# before it): the appliance on the async runtime (`net`) answers every service once,
# then `xl shutdown` stops it.
# After dom0_prelude.sh (step, the $PEER check, now_ms, alive, up).
G=169.254.100.2
if ! up "$G:7"; then
    exit $((fails + 1))
fi
step "$PEER" udp-echo "$G:7" --count 500 --min 1 --max 1472 --window 8 --timeout 120
step "$PEER" udp-echo "$G:7" --count 3 --min 65507 --max 65507 --window 1 --timeout 120
step "$PEER" tcp-echo "$G:7" --bytes 1048576 --conns 8 --timeout 120
step "$PEER" tcp-send "$G:9" --bytes 4194304 --timeout 120
step "$PEER" http-get "$G:80" /bytes/$BYTES --verify-bytes --timeout 120
step "$PEER" http-get "$G:80" /no/such/page --expect-status 404 --timeout 60
xl shutdown "$DOMID" > /run/shutdown.log 2>&1 &
stopped_within "$(now_ms)" "xl shutdown"
exit "$fails"
