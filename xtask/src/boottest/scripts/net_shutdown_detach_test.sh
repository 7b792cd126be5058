# dom0's side of the boot tests `domu-net-shutdown-detach` and `-attach` (run by the box
# next to the domU, with DOMID and PEER set; xtask puts VARIANT, SHUTDOWN_WITHIN and
# HOTPLUG_DELAY before it): `xl shutdown` issued while the domU's only vif is being
# detached and re-attached must be honoured, the domU stopped within SHUTDOWN_WITHIN s.
#   VARIANT=detach: the shutdown as soon as the appliance is closing the vif (its
#     state Closing or Closed), then the vif re-attached.
#   VARIANT=attach: the vif detached, then re-attached with the hotplug script slowed by
#     HOTPLUG_DELAY s (netback goes Connected only once it has run, as with a slow
#     backend), and the shutdown issued while the appliance is inside its handshake
#     (its state Connected, the backend's not yet).
# After dom0_prelude.sh (step, the $PEER check, now_ms, alive, up).
G=169.254.100.2
MAC=00:16:3e:00:00:02
if ! up "$G:80"; then
    exit $((fails + 1))
fi
step "$PEER" http-get "$G:80" / --timeout 60
case "$VARIANT" in
detach)
    xl network-detach "$DOMID" 0 > /run/detach.log 2>&1 &
    bg=$!
    # As soon as the appliance is closing (its state Closing or Closed, or the toolstack
    # removed the device; 30 s at most).
    fe=/local/domain/$DOMID/device/vif/0/state
    t=$(now_ms)
    while [ $(($(now_ms) - t)) -lt 30000 ]; do
        f=$(xenstore-read "$fe" 2>/dev/null)
        case "$f" in 5|6|"") break ;; esac
        usleep 20000
    done
    echo "detach: frontend state ${f:-gone} after $(($(now_ms) - t)) ms"
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
    # The hotplug script, slowed for `online` (the box's own, run after the delay).
    hp=/etc/xen/scripts/vif-bridge
    cp "$hp" "$hp.real" || fails=$((fails + 1))
    cat > "$hp" <<HP
#!/bin/busybox sh
case "\$1" in online|add) sleep $HOTPLUG_DELAY ;; esac
exec /bin/busybox sh $hp.real "\$@"
HP
    chmod +x "$hp"
    xl network-attach "$DOMID" bridge=xenbr0 mac=$MAC > /run/attach.log 2>&1 &
    bg=$!
    # Until the appliance is inside its handshake (60 s at most).
    fe=/local/domain/$DOMID/device/vif/0/state
    be=/local/domain/0/backend/vif/$DOMID/0/state
    t=$(now_ms)
    inside=no
    while [ $(($(now_ms) - t)) -lt 60000 ]; do
        f=$(xenstore-read "$fe" 2>/dev/null)
        b=$(xenstore-read "$be" 2>/dev/null)
        if [ "$f" = 4 ] && [ "$b" != 4 ]; then
            inside=yes
            break
        fi
        usleep 50000
    done
    echo "re-attach: frontend state ${f:-none}, backend state ${b:-none} after $(($(now_ms) - t)) ms (inside the handshake: $inside)"
    [ "$inside" = yes ] || fails=$((fails + 1))
    xl shutdown "$DOMID" > /run/shutdown.log 2>&1 &
    t0=$(now_ms)
    ;;
*)
    echo "VARIANT=$VARIANT: expected detach or attach"
    exit $((fails + 1))
    ;;
esac
stopped_within "$t0" "xl shutdown during $VARIANT"
if [ "$VARIANT" = attach ]; then
    wait "$bg"
    echo "xl network-attach: status $? $(tr '\n' ' ' < /run/attach.log)"
fi
exit "$fails"
