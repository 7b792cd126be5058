# dom0's side of the boot test `domu-libvirt` (the box's libvirt variant: init started
# libvirtd and created the domU with `virsh create /run/domu.xml`; xtask puts
# SHUTDOWN_WITHIN, SETMEM_KIB, FULL_KIB and BALLOON_WITHIN before it): the appliance serves HTTP,
# then virsh dominfo, setmem, reboot and shutdown, each command and its output shown, and
# a `libvirt: …` report line per step for the row's checks.
# After dom0_prelude.sh (step, the $PEER check, now_ms, alive, up).
G=169.254.100.2
LOG=/var/log/xen/console/guest-$DOMU_NAME.log
# Run virsh with its arguments, show the command, its output and status; the status is
# virsh's.
v() {
    echo "\$ virsh $*"
    virsh "$@" > /run/virsh.out 2>&1
    vrc=$?
    sed 's/^/  /' /run/virsh.out
    echo "  (status $vrc)"
    return $vrc
}
# A field of `virsh dominfo` ("Max memory:     262144 KiB" -> 262144).
info() { sed -n "s/^$1: *\([^ ]*\).*/\1/p" /run/virsh.out; }
# The domU's memory as `xl list` shows it, in MiB.
xl_mib() { xl list "$DOMID" 2>/dev/null | awk 'NR==2 {print $3}'; }
if ! up "$G:80"; then
    exit $((fails + 1))
fi
step "$PEER" http-get "$G:80" /bytes/1048576 --verify-bytes --timeout 120

# dominfo: what libvirt sees of the running domain.
v dominfo "$DOMU_NAME" || fails=$((fails + 1))
echo "libvirt: dominfo state=$(info State) id=$(info Id) max_kib=$(info 'Max memory') used_kib=$(info 'Used memory')"

# setmem: libvirt's libxl driver sets the domain's memory/target; the guest's balloon
# follows it, and xl list shows the new size within BALLOON_WITHIN s (the row judges
# balloon= and reached=). A balloon shows itself by control/feature-balloon=1 or its
# data/balloon/shortfall_kb key; a guest with neither after 3 s has none: the wait ends.
v setmem "$DOMU_NAME" "$SETMEM_KIB"
rc=$?
[ "$rc" = 0 ] || fails=$((fails + 1))
target=$(xenstore-read "/local/domain/$DOMID/memory/target" 2>/dev/null)
want_mib=$((SETMEM_KIB / 1024))
balloon=no
t0=$(now_ms)
while :; do
    mib=$(xl_mib)
    [ "$(xenstore-read "/local/domain/$DOMID/control/feature-balloon" 2>/dev/null)" = 1 ] \
        && balloon=yes
    xenstore-exists "/local/domain/$DOMID/data/balloon/shortfall_kb" 2>/dev/null && balloon=yes
    [ -n "$mib" ] && [ "$mib" -le $((want_mib + 2)) ] && break
    [ $(($(now_ms) - t0)) -ge $((BALLOON_WITHIN * 1000)) ] && break
    [ "$balloon" = no ] && [ $(($(now_ms) - t0)) -ge 3000 ] && break
    usleep 500000
done
reached=no
[ -n "$mib" ] && [ "$mib" -le $((want_mib + 2)) ] && reached=yes
v dominfo "$DOMU_NAME"
echo "libvirt: setmem status=$rc target_kib=${target:-none} balloon=$balloon reached=$reached xl_list_mib=${mib:-none} used_kib=$(info 'Used memory') after_ms=$(($(now_ms) - t0))"
# Back to the domain's full size before it reboots.
v setmem "$DOMU_NAME" "$FULL_KIB" || fails=$((fails + 1))

# reboot: libvirt writes control/shutdown=reboot; the guest says it got it on its
# console and ends with SHUTDOWN_reboot, so on_reboot=restart brings the domain back with
# a new id (the row judges came_back=). Should it not come back, it is created again
# from the same XML so that the shutdown step still runs and reports.
before=$(grep -c '^xenpv-rt: shutdown requested (reboot)' "$LOG")
old=$DOMID
v reboot "$DOMU_NAME"
rc=$?
[ "$rc" = 0 ] || fails=$((fails + 1))
t0=$(now_ms)
delivered=no
while [ $(($(now_ms) - t0)) -lt 20000 ]; do
    if [ "$(grep -c '^xenpv-rt: shutdown requested (reboot)' "$LOG")" -gt "$before" ]; then
        delivered=yes
        break
    fi
    usleep 200000
done
# Came back: libvirt names the domain with a new id. Gone: neither libvirt nor xl has
# it for 3 s in a row (a restart may leave a moment between the two domains).
came_back=no
new=""
gone_since=""
while [ $(($(now_ms) - t0)) -lt 60000 ]; do
    new=$(virsh domid "$DOMU_NAME" 2>/dev/null | head -n 1 | tr -d ' ')
    if [ -n "$new" ] && [ "$new" != "$old" ] && [ "$new" != "-" ]; then
        came_back=yes
        break
    fi
    if [ -z "$new" ] && ! xl list "$old" > /dev/null 2>&1; then
        [ -n "$gone_since" ] || gone_since=$(now_ms)
        [ $(($(now_ms) - gone_since)) -ge 3000 ] && break
    else
        gone_since=""
    fi
    usleep 500000
done
echo "libvirt: reboot status=$rc delivered=$delivered came_back=$came_back old_domid=$old new_domid=${new:-none} ms=$(($(now_ms) - t0))"
if [ "$came_back" = yes ]; then
    DOMID=$new
    step up "$G:80"
    step "$PEER" http-get "$G:80" /bytes/1048576 --verify-bytes --timeout 120
else
    echo "the domain is gone after virsh reboot (the guest ended without SHUTDOWN_reboot): virsh create again"
    v create /run/domu.xml || fails=$((fails + 1))
    DOMID=$(virsh domid "$DOMU_NAME" 2>/dev/null | head -n 1 | tr -d ' ')
    echo "libvirt: created-again domid=${DOMID:-none}"
    step up "$G:80"
fi

# shutdown: the guest powers off; the domain is gone (on_poweroff destroy) within
# SHUTDOWN_WITHIN s, and the guest's last exit line says status 0.
t0=$(now_ms)
v shutdown "$DOMU_NAME"
rc=$?
[ "$rc" = 0 ] || fails=$((fails + 1))
while alive && [ $(($(now_ms) - t0)) -lt $((SHUTDOWN_WITHIN * 3000)) ]; do
    usleep 100000
done
ms=$(($(now_ms) - t0))
within=no
if ! alive && [ "$ms" -le $((SHUTDOWN_WITHIN * 1000)) ]; then within=yes; fi
[ "$within" = yes ] || fails=$((fails + 1))
# xenconsoled may still be writing the last line.
n=0
while [ $n -lt 20 ] && ! tail -n 3 "$LOG" | grep -q '^xenpv-rt: exit status'; do
    usleep 200000
    n=$((n + 1))
done
status=$(sed -n 's/^xenpv-rt: exit status \([0-9]*\).*/\1/p' "$LOG" | tail -n 1)
v list --all
echo "libvirt: shutdown status=$rc within=$within ms=$ms limit_s=$SHUTDOWN_WITHIN exit_status=${status:-none}"
# What libvirtd logged (warnings and errors), for the record.
sed 's/^/libvirtd.log: /' /var/log/libvirt/libvirtd.log 2>/dev/null | tail -n 20
exit "$fails"
