# dom0's side of the boot test `domu-metrics` (after dom0_prelude.sh and
# metrics_dom0.sh; xtask puts SHUTDOWN_WITHIN and REPLUG_WITHIN before them): once the appliance serves,
# the metrics it publishes in xenstore; its vif detached and attached again (its keys
# go and come back); then `xl shutdown`.
G=169.254.100.2
if ! up "$G:80"; then
    exit $((fails + 1))
fi
metrics_wait attr/vif/0/ipv4/0 30
metrics_report "ipv4_waited_ms=$waited_ms"
# The vif unplugged: its keys go (as a Linux guest's interface's do); plugged again:
# they come back.
step xl network-detach "$DOMID" 0
gone=no
metrics_wait_gone attr/vif/0 $REPLUG_WITHIN && gone=yes
gone_ms=$waited_ms
step xl network-attach "$DOMID" bridge=xenbr0 mac=00:16:3e:00:00:02
metrics_wait attr/vif/0/ipv4/0 $REPLUG_WITHIN
echo "xenstore: vif-replug gone=$gone gone_ms=$gone_ms back_ms=$waited_ms" \
    "vif0_ipv4_0=$(q "$(xsr attr/vif/0/ipv4/0)")"
xl shutdown "$DOMID" > /run/shutdown.log 2>&1 &
stopped_within "$(now_ms)" "xl shutdown"
exit "$fails"
