# dom0's side of the boot tests `domu-net-shutdown-detach` and `-attach` (run by the box
# next to the domU, with DOMID and PEER set; xtask puts VARIANT and SHUTDOWN_WITHIN
# before it): `xl shutdown` issued while the domU's only vif is being detached and
# re-attached must be honoured. VARIANT=detach: the shutdown right after the detach
# starts (while the appliance closes the vif), then the vif re-attached;
# VARIANT=attach: the vif detached, then the shutdown right after the re-attach starts
# (while the appliance connects again). The domU must stop within SHUTDOWN_WITHIN s.
G=169.254.100.2
MAC=00:16:3e:00:00:02
fails=0
step() {
    if "$@"; then :; else echo "step failed ($?): $*"; fails=$((fails + 1)); fi
}
if [ ! -s "$PEER" ] || [ ! -x "$PEER" ]; then
    echo "no xenbox-peer in dom0 ($PEER): FAIL"
    exit 1
fi
now_ms() { read -r up _ < /proc/uptime; s=${up%.*}; c=${up#*.}; echo $((s * 1000 + ${c#0} * 10)); }
alive() {
    state=$(xl list "$DOMID" 2>/dev/null | awk 'NR==2 {print $5}')
    case "$state" in *s*|*c*|"") return 1 ;; esac
    return 0
}
up() {
    n=0
    while [ $n -lt 30 ]; do
        "$PEER" wait-up "$1" --timeout 10 && return 0
        alive || { echo "the domU stopped (state ${state:-gone}) before $1 was up"; return 1; }
        n=$((n + 1))
    done
    return 1
}
if ! up "$G:80"; then
    exit $((fails + 1))
fi
step "$PEER" http-get "$G:80" / --timeout 60
case "$VARIANT" in
detach)
    xl network-detach "$DOMID" 0 > /run/detach.log 2>&1 &
    bg=$!
    xl shutdown "$DOMID" > /run/shutdown.log 2>&1 &
    t0=$(now_ms)
    wait "$bg"
    echo "xl network-detach: status $? $(tr '\n' ' ' < /run/detach.log)"
    xl network-attach "$DOMID" bridge=xenbr0 mac=$MAC > /run/attach.log 2>&1
    echo "xl network-attach: status $? $(tr '\n' ' ' < /run/attach.log)"
    ;;
attach)
    xl network-detach "$DOMID" 0 > /run/detach.log 2>&1
    echo "xl network-detach: status $? $(tr '\n' ' ' < /run/detach.log)"
    xl network-attach "$DOMID" bridge=xenbr0 mac=$MAC > /run/attach.log 2>&1 &
    bg=$!
    xl shutdown "$DOMID" > /run/shutdown.log 2>&1 &
    t0=$(now_ms)
    wait "$bg"
    echo "xl network-attach: status $? $(tr '\n' ' ' < /run/attach.log)"
    ;;
*)
    echo "VARIANT=$VARIANT: expected detach or attach"
    exit $((fails + 1))
    ;;
esac
while alive && [ $(($(now_ms) - t0)) -lt $((SHUTDOWN_WITHIN * 2000)) ]; do
    usleep 100000
done
ms=$(($(now_ms) - t0))
if alive; then
    echo "xl shutdown during $VARIANT: the domU still runs after $ms ms (limit ${SHUTDOWN_WITHIN} s): FAIL"
    fails=$((fails + 1))
elif [ "$ms" -gt $((SHUTDOWN_WITHIN * 1000)) ]; then
    echo "xl shutdown during $VARIANT: the domU stopped after $ms ms (state $state, limit ${SHUTDOWN_WITHIN} s): FAIL"
    fails=$((fails + 1))
else
    echo "xl shutdown during $VARIANT: the domU stopped after $ms ms (state $state, limit ${SHUTDOWN_WITHIN} s): ok"
fi
exit "$fails"
