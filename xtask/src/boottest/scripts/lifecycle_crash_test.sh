# dom0's side of the boot test `domu-crash-request` (run by the box next to the domU,
# with DOMID and PEER set; xtask puts SHUTDOWN_WITHIN before it): the appliance serves,
# then dom0 writes `crash` to its control/shutdown, as a toolstack may; the guest
# acknowledges it (the key cleared) and the domain ends within SHUTDOWN_WITHIN s as
# crashed (SHUTDOWN_crash, reason code 3: the box's on_crash preserves it).
# After dom0_prelude.sh (step, the $PEER check, now_ms, alive, up, stopped_within).
G=169.254.100.2
if ! up "$G:80"; then
    exit $((fails + 1))
fi
step "$PEER" http-get "$G:80" /bytes/65536 --verify-bytes --timeout 60
t0=$(now_ms)
step xenstore-write "/local/domain/$DOMID/control/shutdown" crash
stopped_within "$t0" "crash request"
echo "control/shutdown after it: '$(xenstore-read "/local/domain/$DOMID/control/shutdown" 2>&1)'"
reason=$(xl list -v "$DOMID" 2>/dev/null | awk 'NR==2 {print $8}')
echo "domain $DOMID state $state shutdown reason code: ${reason:-none}"
[ "$reason" = 3 ] || fails=$((fails + 1))
exit "$fails"
