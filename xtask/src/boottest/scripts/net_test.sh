# dom0's side of the boot test `domu-net-appliance` (run by the box next to the domU,
# with DOMID and PEER set). Every client prints one verdict line; the script's exit
# status is the number of steps that failed.
G=169.254.100.2
G2=169.254.100.3
fails=0
step() {
    if "$@"; then :; else echo "step failed ($?): $*"; fails=$((fails + 1)); fi
}
step "$PEER" wait-up "$G:7" --timeout 300
step ping -c 100 -i 0.05 -W 5 "$G"
step "$PEER" udp-echo "$G:7" --count 10000 --min 1 --max 1472 --window 8 --timeout 600
step "$PEER" tcp-echo "$G:7" --bytes 33554432 --timeout 600
step "$PEER" http-get "$G:80" /bytes/67108864 --verify-bytes --timeout 600
step "$PEER" tcp-echo "$G:7" --bytes 1048576 --conns 8 --timeout 300
step "$PEER" http-get "$G:80" /bytes/1048576 --verify-bytes --conns 8 --timeout 300
step "$PEER" http-get "$G:80" / --timeout 60
step "$PEER" http-get "$G:80" /no/such/page --expect-status 404 --timeout 60
step "$PEER" udp-echo "$G2:7" --count 200 --window 4 --timeout 120
# The second vif's backend goes away and comes back: the appliance closes the vif,
# reconnects when the new backend waits for it, and serves on it again.
step xl network-detach "$DOMID" 1
xl network-list "$DOMID"
step xl network-attach "$DOMID" bridge=xenbr0 mac=00:16:3e:00:00:03
step "$PEER" wait-up "$G2:7" --timeout 300
if "$PEER" tcp-echo "$G2:7" --bytes 1048576 --timeout 120 && "$PEER" http-get "$G2:80" / --timeout 60; then
    echo "after re-attach: ok"
else
    fails=$((fails + 1))
fi
exit "$fails"
