# dom0's side of `domu-suspend-refused` (after dom0_prelude.sh): a consumer built
# without the runtime's `suspend` (examples/http-server) serves; `xl save` asks it to
# suspend, which it refuses (it never acknowledges), so xl gives up (libxl cancels the
# request after its 60 s) and fails; the domU is still the same domain, running, with no
# feature-suspend, and serves on.
G=169.254.100.2
up "$G:80" || exit $((fails + 1))
step "$PEER" http-get "$G:80" / --timeout 60
old=$DOMID
s=$(xenstore-read "/local/domain/$old/control/feature-suspend" 2>/dev/null)
if [ "$s" = 1 ]; then
    echo "control/feature-suspend is '$s' on a consumer without suspend: FAIL"
    fails=$((fails + 1))
else
    echo "control/feature-suspend is '$s', not 1: ok"
fi
t=$(now_ms)
if xl save "$DOMU_NAME" /run/refused > /run/save.log 2>&1; then
    echo "xl save succeeded on a guest without suspend: FAIL"
    fails=$((fails + 1))
else
    echo "xl save failed after $(($(now_ms) - t)) ms: $(tr '\n' ' ' < /run/save.log | cut -c1-400)"
fi
rm -f /run/refused
new=$(xl domid "$DOMU_NAME" 2>/dev/null)
if [ "$new" = "$old" ] && alive; then
    echo "after the refused save: still domain $new, running: ok"
else
    echo "after the refused save: domain $old is now '$new' (state ${state:-gone}): FAIL"
    fails=$((fails + 1))
fi
step "$PEER" http-get "$G:80" / --timeout 60
exit "$fails"
