# dom0's side of `domu-save-checkpoint` (after dom0_prelude.sh and migrate_prelude.sh):
# `xl save -c` (a checkpoint: the guest suspends, is saved, and resumes in the same
# domain, the cancelled path), then the same domain id serves on; then `finish`.
hold_start || exit $((fails + 1))
serves "before"
old=$(domid_now)
f=/run/checkpoint
t=$(now_ms)
if xl save -c "$DOMU_NAME" "$f" > /run/save.log 2>&1; then
    echo "xl save -c: $(($(now_ms) - t)) ms, $(wc -c < "$f") bytes: ok"
else
    echo "xl save -c failed after $(($(now_ms) - t)) ms: $(tr '\n' ' ' < /run/save.log): FAIL"
    fails=$((fails + 1))
fi
rm -f "$f"
new=$(domid_now)
if [ "$new" = "$old" ]; then
    echo "after xl save -c: still domain $new: ok"
else
    echo "after xl save -c: domain $old is now '$new': FAIL"
    fails=$((fails + 1))
fi
serves "after the checkpoint"
finish
exit "$fails"
