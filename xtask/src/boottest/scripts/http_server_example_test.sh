# dom0's side of the boot test `domu-example-http-server` (examples/http-server:
# picoserve over xenpv-net; run by the box next to the domU, with DOMID and PEER set;
# xtask puts SHUTDOWN_WITHIN before it): every route's status through the peer's
# http-get, the large body checked byte for byte with its checksum header, 32 clients at
# once, the text bodies printed for the row's checks, then `xl shutdown` must end the
# domU within SHUTDOWN_WITHIN s.
# After dom0_prelude.sh (step, the $PEER check, now_ms, alive, up, stopped_within).
G=169.254.100.2
if ! up "$G:80"; then
    exit $((fails + 1))
fi
step "$PEER" http-get "$G:80" / --timeout 60
step "$PEER" http-get "$G:80" /hello/xen --timeout 60
step "$PEER" http-get "$G:80" /info --timeout 60
step "$PEER" http-get "$G:80" /no/such/page --expect-status 404 --timeout 60
step "$PEER" http-get "$G:80" /bytes/1048576 --verify-bytes --timeout 120
step "$PEER" http-get "$G:80" /bytes/65536 --verify-bytes --conns 32 --timeout 120
# The bodies themselves (busybox wget), for the row's checks.
for p in / /hello/xen /info; do
    echo "body of $p: $(wget -q -O - "http://$G$p")"
done
t0=$(now_ms)
step xl shutdown "$DOMID"
stopped_within "$t0" "xl shutdown"
exit "$fails"
