# dom0's side of `domu-migrate` (after dom0_prelude.sh and migrate_prelude.sh): the held
# echo connection opened, then $ROUNDS live migrations to this same host (`xl migrate -s
# '' NAME 'xl migrate-receive'`: with an empty ssh command xl runs the receiver as
# given), each followed by a checked GET and /state; Xen's log checked; then `finish`.
hold_start || exit $((fails + 1))
serves "before"
for i in $(seq 1 "$ROUNDS"); do
    old=$(domid_now)
    t=$(now_ms)
    if ! xl migrate -s '' "$DOMU_NAME" 'xl migrate-receive' > /run/migrate.log 2>&1; then
        echo "xl migrate $i failed after $(($(now_ms) - t)) ms: $(tr '\n' ' ' < /run/migrate.log | cut -c1-600): FAIL"
        fails=$((fails + 1))
        break
    fi
    echo "xl migrate $i: $(($(now_ms) - t)) ms: domain $old is now domain $(domid_now): ok"
    serves "after migration $i"
done
bad=$(xl dmesg | grep -ciwE "error|failed|bug|assert")
echo "xl dmesg: $bad lines with error/failed/bug/assert"
[ "$bad" = 0 ] || xl dmesg | grep -iwE "error|failed|bug|assert" | tail -n 5
finish
exit "$fails"
