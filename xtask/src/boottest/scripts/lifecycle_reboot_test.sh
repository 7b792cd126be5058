# dom0's side of the boot test `domu-reboot` (run by the box next to the domU, with
# DOMID, DOMU_NAME and PEER set; xtask puts SHUTDOWN_WITHIN, REBOOT_WITHIN and SUSPENDS
# before it): the appliance serves, its feature keys are there (feature-suspend '1' iff
# SUSPENDS=1), `xl sysrq h` is answered and cleared; without suspend, a `suspend` written
# to control/shutdown is refused (left there, the guest serving on) until dom0 clears it
# as libxl does when it gives up; then `xl reboot`, and
# after it `xl sysrq b`, each bring it back as a new domain (the box follows it too) that
# serves again, and `xl shutdown` ends it within SHUTDOWN_WITHIN s with reason poweroff.
# After dom0_prelude.sh (step, the $PEER check, now_ms, alive, up, stopped_within).
G=169.254.100.2
# Wait (at most $2 s) until `xenstore-read $1` gives "$3"; says how long it took.
key_becomes() {
    t=$(now_ms)
    while [ "$(xenstore-read "$1" 2>/dev/null)" != "$3" ]; do
        if [ $(($(now_ms) - t)) -ge $(($2 * 1000)) ]; then
            echo "$1 is '$(xenstore-read "$1" 2>&1)' after $2 s, not '$3': FAIL"
            fails=$((fails + 1))
            return 1
        fi
        usleep 100000
    done
    echo "$1 = '$3' after $(($(now_ms) - t)) ms: ok"
}
# The feature keys of domain $1: poweroff and reboot; suspend iff SUSPENDS=1.
features() {
    for f in poweroff reboot; do
        key_becomes "/local/domain/$1/control/feature-$f" 10 1
    done
    # libxl makes the key (empty, writable by the guest); the guest leaves it alone.
    s=$(xenstore-read "/local/domain/$1/control/feature-suspend" 2>/dev/null)
    if [ "$SUSPENDS" = 1 ]; then
        if [ "$s" = 1 ]; then
            echo "control/feature-suspend is '1': ok"
        else
            echo "control/feature-suspend is '$s', not 1: the appliance offers suspend: FAIL"
            fails=$((fails + 1))
        fi
    elif [ "$s" = 1 ]; then
        echo "control/feature-suspend is '$s': the guest cannot suspend: FAIL"
        fails=$((fails + 1))
    else
        echo "control/feature-suspend is '$s', not 1: ok"
    fi
}
if ! up "$G:80"; then
    exit $((fails + 1))
fi
step "$PEER" http-get "$G:80" /bytes/1048576 --verify-bytes --timeout 120
features "$DOMID"
D=/local/domain/$DOMID/control
# sysrq: a letter with no meaning here is said on the console, and the key cleared.
step xl sysrq "$DOMID" h
key_becomes "$D/sysrq" 10 ""
# suspend (an appliance without it): refused, so never acknowledged: the key still says
# it 3 s later, and the guest serves meanwhile; then dom0 takes it back ("" as libxl
# writes on its timeout). An appliance with it would suspend: domu-save-* test that.
if [ "$SUSPENDS" != 1 ]; then
    step xenstore-write "$D/shutdown" suspend
    sleep 3
    echo "control/shutdown 3 s after suspend was asked: '$(xenstore-read "$D/shutdown" 2>&1)'"
    [ "$(xenstore-read "$D/shutdown" 2>/dev/null)" = suspend ] || fails=$((fails + 1))
    step "$PEER" http-get "$G:80" /bytes/65536 --verify-bytes --timeout 60
    step xenstore-write "$D/shutdown" ""
fi
# Ask for a reboot with "$@" (xl reboot, xl sysrq b): the domain ends with reason
# reboot, xl (on_reboot = "restart") creates it again under the same name with a new id,
# which serves again (/bytes/1048576 checked) with its feature keys. DOMID becomes the new
# id; 1 if no new domain came within REBOOT_WITHIN s or it does not serve.
rebooted_by() {
    old=$DOMID
    t0=$(now_ms)
    step "$@"
    new=""
    while [ $(($(now_ms) - t0)) -lt $((REBOOT_WITHIN * 1000)) ]; do
        new=$(xl domid "$DOMU_NAME" 2>/dev/null)
        [ -n "$new" ] && [ "$new" != "$old" ] && break
        new=""
        usleep 200000
    done
    if [ -z "$new" ]; then
        echo "$*: no new domain named $DOMU_NAME within $REBOOT_WITHIN s: FAIL"
        return 1
    fi
    echo "$*: domain $old is now domain $new after $(($(now_ms) - t0)) ms: ok"
    DOMID=$new
    up "$G:80" || return 1
    echo "serving again $(($(now_ms) - t0)) ms after $*"
    step "$PEER" http-get "$G:80" /bytes/1048576 --verify-bytes --timeout 120
    features "$DOMID"
}
rebooted_by xl reboot "$DOMID" || exit $((fails + 1))
rebooted_by xl sysrq "$DOMID" b || exit $((fails + 1))
# xl shutdown: the new domain stops within SHUTDOWN_WITHIN s, reason poweroff (0).
xl shutdown "$DOMID" > /run/shutdown.log 2>&1 &
stopped_within "$(now_ms)" "xl shutdown after the reboot"
reason=$(xl list -v "$DOMID" 2>/dev/null | awk 'NR==2 {print $8}')
echo "domain $DOMID shutdown reason code: ${reason:-none}"
[ "$reason" = 0 ] || fails=$((fails + 1))
exit "$fails"
