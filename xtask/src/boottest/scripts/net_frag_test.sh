# dom0's side of the boot test `domu-net-fragments` (run by the box next to the domU,
# with DOMID and PEER set; xtask puts RECOVER_WITHIN before it): UDP echo of datagrams larger than the MTU (dom0's kernel
# fragments them; the appliance must reassemble them and fragment its answers), then 10 s
# of fragments that never complete a datagram (a raw socket in dom0, to the appliance's
# address only, at a bounded rate), after which UDP echo (small and large) and HTTP must
# still answer. The appliance reports the fragments it dropped when it stops (the row
# checks it). Every client prints one verdict line; the exit status is the number of
# steps that failed.
# After dom0_prelude.sh (step, the $PEER check, now_ms, alive, up).
G=169.254.100.2
if ! up "$G:7"; then
    exit $((fails + 1))
fi
# Every size class from 1473 (one byte over a 1500-byte frame) to 65507 (the largest
# UDP datagram over IPv4), and a few in between, one at a time.
step "$PEER" udp-echo "$G:7" \
    --sizes 1473,1480,2000,2960,2961,4096,8192,9000,12345,16384,32768,47111,60001,65507 \
    --count 14 --window 1 --reply-ms 3000 --timeout 300
step "$PEER" frag-flood "$G" --seconds 10 --rate 1000 --size 1480 --port 7 --timeout 60
# After the flood: small and large echoes and HTTP.
step "$PEER" udp-echo "$G:7" --count 200 --min 1 --max 1472 --window 4 --timeout 120
# Large ones may be refused while the flood's incomplete datagrams still hold the
# reassembly buffers: they must answer again within RECOVER_WITHIN s (the appliance's
# reassembly timeout at most), each try a fresh 3 datagrams.
t=$(now_ms)
while :; do
    if "$PEER" udp-echo "$G:7" --sizes 1473,8192,65507 --count 3 --window 1 --reply-ms 3000 \
        --timeout 60; then
        echo "large datagrams after the flood: echoed $(($(now_ms) - t)) ms after it ended: ok"
        break
    fi
    if [ $(($(now_ms) - t)) -ge $((RECOVER_WITHIN * 1000)) ] || ! alive; then
        echo "large datagrams after the flood: not echoed within ${RECOVER_WITHIN} s: FAIL"
        fails=$((fails + 1))
        break
    fi
done
step "$PEER" http-get "$G:80" /bytes/1048576 --verify-bytes --timeout 120
exit "$fails"
