# dom0's side of the boot tests `async-net` and `async-net-ignore` (run by the box next
# to the domU, with DOMID and PEER set; xtask puts SHUTDOWN_WITHIN and REATTACH before it): TCP echo
# over the async runtime's xenpv-net stack, then `xl shutdown`, honoured within
# SHUTDOWN_WITHIN s (by the app returning, or by the runtime's grace period).
# After dom0_prelude.sh (step, the $PEER check, now_ms, alive, up).
G=169.254.100.2
if ! up "$G:7"; then
    exit $((fails + 1))
fi
step "$PEER" tcp-echo "$G:7" --bytes 1048576 --timeout 120
step "$PEER" tcp-echo "$G:7" --bytes 262144 --conns 8 --timeout 120
# REATTACH=1: the vif's backend goes away and comes back; the runtime closes the vif,
# connects the new backend to the same stack, and the app serves on without noticing.
if [ "$REATTACH" = 1 ]; then
    step xl network-detach "$DOMID" 0
    step xl network-attach "$DOMID" bridge=xenbr0 mac=00:16:3e:00:00:02
    if up "$G:7" && "$PEER" tcp-echo "$G:7" --bytes 262144 --timeout 120; then
        echo "after re-attach: ok"
    else
        fails=$((fails + 1))
    fi
fi
xl shutdown "$DOMID" > /run/shutdown.log 2>&1 &
t0=$(now_ms)
stopped_within "$t0" "xl shutdown"
exit "$fails"
