# dom0's side of the boot test `async-embassy-net` (run by the box next to the domU,
# with DOMID and PEER set; xtask puts SHUTDOWN_WITHIN before it): the services of the
# `enet` word (embassy-net over netfront) answer — TCP discard, `GET /bytes/N` with its
# checksum, UDP echo — then `xl shutdown` is honoured within SHUTDOWN_WITHIN s.
# After dom0_prelude.sh (step, the $PEER check, now_ms, alive, up).
G=169.254.100.2
if ! up "$G:80"; then
    exit $((fails + 1))
fi
step "$PEER" tcp-send "$G:9" --bytes 4194304 --timeout 120
step "$PEER" http-get "$G:80" /bytes/4194304 --verify-bytes --timeout 120
step "$PEER" http-get "$G:80" /nothing-here --expect-status 404 --timeout 60
step "$PEER" udp-echo "$G:7" --count 50 --min 1 --max 1472 --timeout 60
xl shutdown "$DOMID" > /run/shutdown.log 2>&1 &
t0=$(now_ms)
stopped_within "$t0" "xl shutdown"
exit "$fails"
