# dom0's side of the boot test `domu-metrics` (after dom0_prelude.sh and
# metrics_dom0.sh; xtask puts SHUTDOWN_WITHIN before them): once the appliance serves,
# the metrics it publishes in xenstore, then `xl shutdown`.
G=169.254.100.2
if ! up "$G:80"; then
    exit $((fails + 1))
fi
metrics_wait attr/vif/0/ipv4/0 30
metrics_report "ipv4_waited_ms=$waited_ms"
xl shutdown "$DOMID" > /run/shutdown.log 2>&1 &
stopped_within "$(now_ms)" "xl shutdown"
exit "$fails"
