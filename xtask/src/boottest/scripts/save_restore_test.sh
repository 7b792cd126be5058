# dom0's side of `domu-save-restore` (after dom0_prelude.sh and migrate_prelude.sh):
# the held echo connection opened, then `xl save` + `xl restore` $ROUNDS times, each
# followed by a checked GET and /state; then `finish`. A failed save or restore ends the
# loop (the rest is still checked).
hold_start || exit $((fails + 1))
serves "before"
for i in $(seq 1 "$ROUNDS"); do
    f=/run/save.$i
    t=$(now_ms)
    if ! xl save "$DOMU_NAME" "$f" > /run/save.log 2>&1; then
        echo "xl save $i failed after $(($(now_ms) - t)) ms: $(tr '\n' ' ' < /run/save.log): FAIL"
        fails=$((fails + 1))
        rm -f "$f"
        break
    fi
    echo "xl save $i: $(($(now_ms) - t)) ms, $(wc -c < "$f") bytes: ok"
    t=$(now_ms)
    if ! xl restore "$f" > /run/restore.log 2>&1; then
        echo "xl restore $i failed after $(($(now_ms) - t)) ms: $(tr '\n' ' ' < /run/restore.log): FAIL"
        fails=$((fails + 1))
        rm -f "$f"
        break
    fi
    rm -f "$f"
    echo "xl restore $i: $(($(now_ms) - t)) ms: now domain $(domid_now): ok"
    serves "after restore $i"
done
finish
exit "$fails"
