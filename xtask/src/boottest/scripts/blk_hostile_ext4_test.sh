# dom0's side of the boot test `domu-blk-hostile-ext4` (run by the box next to the domU,
# with DOMID and PEER set): the domU's disk is an ext4 image whose superblock claims
# 0xffffffff blocks in groups of one block. The appliance (`net files`) must refuse the
# filesystem with an error naming the field (the row checks the console) and serve
# everything else: /bytes and /.
# After dom0_prelude.sh (step, the $PEER check, now_ms, alive, up).
G=169.254.100.2
if ! up "$G:80"; then
    exit $((fails + 1))
fi
step "$PEER" http-get "$G:80" /bytes/1048576 --verify-bytes --timeout 120
step "$PEER" http-get "$G:80" / --timeout 60
exit "$fails"
