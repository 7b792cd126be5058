# dom0's side of the boot test `domu-net-hostile-clients` (run by the box next to the
# domU, with DOMID and PEER set; xtask puts HEAD_TIMEOUT and SHUTDOWN_WITHIN before it).
# Issue 24's whole-system checks of hostile clients, in one boot:
#   admission: 64 clients at once on the echo port, every one served, none refused;
#   slow clients: 40 silent connections and 20 with half a request head held on port
#     80 while a normal client is served within 5 s; the appliance closes the held ones
#     within HEAD_TIMEOUT seconds;
#   bounded work: UDP echo round trips during GET /bytes/4294967296 (or, after a 4xx,
#     /bytes/268435456) stay under 10x their idle median, and `xl shutdown` issued
#     during that transfer stops the domU within SHUTDOWN_WITHIN seconds (last: the
#     domU is gone after it).
# Every client prints one verdict line; the exit status is the number of steps that
# failed.
# After dom0_prelude.sh (step, the $PEER check, now_ms, alive, up).
G=169.254.100.2
# A second dom0 address on the bridge: the normal client's, so that it is not the same
# peer as the held connections (the appliance may limit connections per peer).
P=169.254.100.9
if ! up "$G:7"; then
    exit $((fails + 1))
fi
step ip addr add "$P/24" dev xenbr0
# Admission: 64 connections open at once (each established before any sends), each
# echoed byte for byte; a refused or reset one fails.
step "$PEER" tcp-echo "$G:7" --conns 64 --together --bytes 65536 --timeout 600
# Slow clients. The held ones must be closed within the head timeout, plus 5 s for the
# close to reach dom0 under emulation (the client counts from its own handshake).
step "$PEER" tcp-hold "$G:80" --silent 40 --half 20 --connect-ms 5000 \
    --expect-closed-within $((HEAD_TIMEOUT + 5)) --probe / --probe-within 5 --probe-from "$P" \
    --timeout $((HEAD_TIMEOUT + 120))
# Port 80 serves again once they are gone.
step "$PEER" http-get "$G:80" / --timeout 60
# Bounded work: the round trips during the large transfer, then xl shutdown during it.
# The body is read at 1 MiB/s (the transfer itself is then a light load: an honest
# stream measured 2.3x the idle median in the box, 5.6x at 8 MiB/s); the busy round
# trips stop once more than half are lost (at most 16 s of 1 s waits after the 5 s for
# the head), so that a loop held by the request still is when xl shutdown comes.
rm -f /run/rtt-ready /run/rtt-stop
"$PEER" rtt-under-load "$G:7" --http "$G:80" --path /bytes/4294967296 \
    --fallback /bytes/268435456 --head-within 5 --max-ratio 10 \
    --read-rate 1M --busy 30 --reply-ms 1000 \
    --ready-file /run/rtt-ready --stop-file /run/rtt-stop --timeout 900 &
rtt=$!
# The peer writes the file once its round trips are done (at most a few minutes).
t=$(now_ms)
while [ ! -s /run/rtt-ready ] && kill -0 "$rtt" 2>/dev/null \
    && [ $(($(now_ms) - t)) -lt 600000 ]; do
    usleep 100000
done
transfer=$(cat /run/rtt-ready 2>/dev/null)
echo "the large transfer: ${transfer:-no word from rtt-under-load}"
[ "$transfer" = in-progress ] || fails=$((fails + 1))
# xl shutdown during it; the domU must stop within SHUTDOWN_WITHIN s (watched for 3x
# that, to say how long it took).
xl shutdown "$DOMID" > /run/xl-shutdown-test.log 2>&1 &
stopped_within "$(now_ms)" "xl shutdown during the transfer"
touch /run/rtt-stop
wait "$rtt" || { echo "step failed: rtt-under-load"; fails=$((fails + 1)); }
exit "$fails"
