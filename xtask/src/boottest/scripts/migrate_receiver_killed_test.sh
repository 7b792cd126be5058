# dom0's side of `domu-migrate-receiver-killed` (after dom0_prelude.sh and
# migrate_prelude.sh): a live migration to this host whose receiver is killed (SIGKILL)
# once the incoming domain exists and memory is streaming; xl must say the migration
# failed and resume the domU at the sender, which keeps its id and serves on; then
# `finish`.
hold_start || exit $((fails + 1))
serves "before"
old=$(domid_now)
xl migrate -s '' "$DOMU_NAME" 'xl migrate-receive' > /run/migrate.log 2>&1 &
mpid=$!
# The receiver is taking memory once the incoming domain is there.
n=0
while ! xl domid "$DOMU_NAME--incoming" > /dev/null 2>&1; do
    n=$((n + 1))
    if [ $n -gt 600 ] || ! kill -0 "$mpid" 2>/dev/null; then
        break
    fi
    usleep 200000
done
usleep 500000
# The receiver's own process (`xl migrate-receive`), not the sender, whose arguments
# name it too (`xl migrate -s '' NAME 'xl migrate-receive'`), nor a shell around it.
rpid=$(ps -o pid,args | awk '$2 == "xl" && $3 == "migrate-receive" {print $1}' | head -n 1)
if [ -n "$rpid" ] && kill -0 "$mpid" 2>/dev/null; then
    kill -KILL "$rpid"
    echo "killed the receiver (pid $rpid) mid-stream: ok"
else
    echo "no receiver to kill mid-stream (it ended first): FAIL"
    fails=$((fails + 1))
fi
wait "$mpid"
rc=$?
sed 's/^/xl migrate: /' /run/migrate.log | tail -n 8
if [ "$rc" != 0 ] && grep -q "resuming at sender" /run/migrate.log; then
    echo "xl migrate failed (status $rc) and resumed the domU at the sender: ok"
else
    echo "xl migrate status $rc, no 'resuming at sender': FAIL"
    fails=$((fails + 1))
fi
xl destroy "$DOMU_NAME--incoming" > /dev/null 2>&1
new=$(domid_now)
if [ "$new" = "$old" ]; then
    echo "after the killed migration: still domain $new: ok"
else
    echo "after the killed migration: domain $old is now '$new': FAIL"
    fails=$((fails + 1))
fi
serves "after the killed migration"
finish
exit "$fails"
