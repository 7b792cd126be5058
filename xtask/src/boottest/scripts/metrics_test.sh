# dom0's side of the boot test `domu-metrics` (after dom0_prelude.sh and
# metrics_dom0.sh; xtask puts SHUTDOWN_WITHIN, REPLUG_WITHIN and
# MEMSET_WITHIN before them): once the appliance serves,
# the metrics it publishes in xenstore; its vif detached and attached again (its keys
# go and come back); `xl mem-set` to 128 MiB and back to 256 (meminfo_total follows);
# then `xl shutdown`.
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
# Memory moved by the toolstack (the balloon follows memory/target): meminfo_total
# follows within 2% of the target.
mem_step() {
    step xl mem-set "$DOMID" "${1}m"
    want=$(($1 * 1024))
    t0=$(metrics_ms)
    got=""
    while [ $(($(metrics_ms) - t0)) -lt $((MEMSET_WITHIN * 1000)) ]; do
        got=$(xsr data/meminfo_total)
        d=$((${got:-0} - want))
        [ $d -lt 0 ] && d=$((-d))
        [ $((d * 50)) -le $want ] && break
        usleep 200000
    done
    echo "xenstore: mem-set target_mib=$1 meminfo_total=$(q "$got")" \
        "meminfo_free=$(q "$(xsr data/meminfo_free)") waited_ms=$(($(metrics_ms) - t0))" \
        "xl_mem_mib=$(xl list "$DOMID" 2>/dev/null | awk 'NR==2 {print $3}')"
}
mem_step 128
mem_step 256
xl shutdown "$DOMID" > /run/shutdown.log 2>&1 &
stopped_within "$(now_ms)" "xl shutdown"
exit "$fails"
