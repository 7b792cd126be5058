# dom0's side of the boot tests `domu-save-restore-bare` and `domu-migrate-bare` (run by
# the box next to the domU, with DOMID, DOMU_NAME and PEER set; xtask puts
# SHUTDOWN_WITHIN, CHECKPOINT, SAVES and MIGRATES before it): a guest without devices
# (the app's `ticker` word, built with the runtime's `suspend` feature) says it can
# suspend (control/feature-suspend = 1); if CHECKPOINT is 1, `xl save -c` checkpoints it
# (the same domain goes on); then SAVES times `xl save` + `xl restore` and MIGRATES
# times `xl migrate` to this host (a new domain each time, followed by name); then `xl
# shutdown` ends it within SHUTDOWN_WITHIN s. After dom0_prelude.sh (step, now_ms,
# alive, stopped_within).
F=/run/domu.save
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
key_becomes "/local/domain/$DOMID/control/feature-suspend" 60 1 || exit 1
sleep 5
# The checkpoint: the domain is suspended, saved, and resumed where it was.
if [ "$CHECKPOINT" = 1 ]; then
    t0=$(now_ms)
    step xl save -c "$DOMU_NAME" "$F"
    nid=$(xl domid "$DOMU_NAME" 2>/dev/null)
    if [ "$nid" = "$DOMID" ] && alive; then
        echo "xl save -c: domain $DOMID goes on after $(($(now_ms) - t0)) ms: ok"
    else
        echo "xl save -c: domain $DOMID is now '${nid}' (state ${state:-gone}): FAIL"
        fails=$((fails + 1))
    fi
    rm -f "$F"
    sleep 5
fi
i=1
while [ $i -le "$SAVES" ]; do
    old=$DOMID
    t0=$(now_ms)
    if ! xl save "$DOMU_NAME" "$F"; then
        echo "save/restore $i: xl save failed, domain $old $(alive && echo goes on || echo "is ${state:-gone}"): FAIL"
        fails=$((fails + 1))
        break
    fi
    t1=$(now_ms)
    step xl restore "$F"
    t2=$(now_ms)
    rm -f "$F"
    DOMID=$(xl domid "$DOMU_NAME" 2>/dev/null)
    if [ -n "$DOMID" ] && [ "$DOMID" != "$old" ] && alive; then
        echo "save/restore $i: domain $old is now domain $DOMID save_ms=$((t1 - t0)) restore_ms=$((t2 - t1)): ok"
    else
        echo "save/restore $i: domain $old is now '${DOMID}' (state ${state:-gone}): FAIL"
        fails=$((fails + 1))
        break
    fi
    sleep 5
    i=$((i + 1))
done
i=1
while [ $i -le "$MIGRATES" ]; do
    old=$DOMID
    t0=$(now_ms)
    step xl migrate -s '' "$DOMU_NAME" 'xl migrate-receive'
    t1=$(now_ms)
    DOMID=$(xl domid "$DOMU_NAME" 2>/dev/null)
    if [ -n "$DOMID" ] && [ "$DOMID" != "$old" ] && alive; then
        echo "migrate $i: domain $old is now domain $DOMID migrate_ms=$((t1 - t0)): ok"
    else
        echo "migrate $i: domain $old is now '${DOMID}' (state ${state:-gone}): FAIL"
        fails=$((fails + 1))
        break
    fi
    sleep 5
    i=$((i + 1))
done
t0=$(now_ms)
step xl shutdown "$DOMID"
stopped_within "$t0" "xl shutdown"
exit $fails
