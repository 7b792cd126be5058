# dom0's side of the boot test `domu-blk` (run by the box next to the domU, with DOMID,
# PEER and DISK0 set; xtask puts EXPECT0 = the sha256 of the domU's pattern above).
# DISK0 is the domU's xvda (256 MiB, read-write). dom0 waits for the domU's pattern
# (seed 1), checks it with sha256sum and xenbox-peer, then writes its own (seed 2) over
# the disk for the domU to check, and waits for its verdict. Every step prints one verdict; the exit status is the
# number of steps that failed.
fails=0
step() {
    if "$@"; then :; else echo "step failed ($?): $*"; fails=$((fails + 1)); fi
}
BYTES0=268435456
# Wait (600 s at most) for the domU to write its key data/xenpv-app/$1; its value.
wait_key() {
    n=0
    while :; do
        v=$(xenstore-read "/local/domain/$DOMID/data/xenpv-app/$1" 2>/dev/null)
        [ -n "$v" ] && break
        n=$((n + 1))
        if [ $n -gt 1200 ]; then
            echo "the domU never wrote data/xenpv-app/$1 (600 s)"
            exit $((fails + 1))
        fi
        usleep 500000
    done
    echo "domU: $1 = $v"
}
# The domU says when its pattern (seed 1) is written and flushed.
wait_key blk-written
# Around dom0's page cache (iflag=direct): what blkback wrote to the device.
sum=$(dd if="$DISK0" iflag=direct bs=1M 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$sum" = "$EXPECT0" ]; then
    echo "sha256sum $DISK0: $sum ok"
else
    echo "sha256sum $DISK0: $sum, expected $EXPECT0"
    fails=$((fails + 1))
fi
step "$PEER" disk-verify "$DISK0" --seed 1 --bytes "$BYTES0"
# dom0's turn: its pattern over the whole disk, then the domU is told.
step "$PEER" disk-fill "$DISK0" --seed 2 --bytes "$BYTES0"
step xenstore-write "/local/domain/$DOMID/data/xenpv-app/blk-dom0-ready" "$BYTES0"
# The domU checks dom0's pattern and says how it went.
wait_key blk-done
[ "$v" = pass ] || fails=$((fails + 1))
exit "$fails"
