# dom0's side of the boot test `domu-blk-hostile-ext4` (run by the box next to the domU,
# with DOMID and PEER set): the domU's disk is an ext4 image whose superblock claims
# 0xffffffff blocks in groups of one block. The appliance (`net files`) must refuse the
# filesystem with an error naming the field (the row checks the console) and serve
# everything else: /bytes and /.
G=169.254.100.2
fails=0
step() {
    if "$@"; then :; else echo "step failed ($?): $*"; fails=$((fails + 1)); fi
}
if [ ! -s "$PEER" ] || [ ! -x "$PEER" ]; then
    echo "no xenbox-peer in dom0 ($PEER): FAIL"
    exit 1
fi
alive() {
    state=$(xl list "$DOMID" 2>/dev/null | awk 'NR==2 {print $5}')
    case "$state" in *s*|*c*|"") return 1 ;; esac
    return 0
}
up() {
    n=0
    while [ $n -lt 30 ]; do
        "$PEER" wait-up "$1" --timeout 10 && return 0
        alive || { echo "the domU stopped (state ${state:-gone}) before $1 was up"; return 1; }
        n=$((n + 1))
    done
    return 1
}
if ! up "$G:80"; then
    exit $((fails + 1))
fi
step "$PEER" http-get "$G:80" /bytes/1048576 --verify-bytes --timeout 120
step "$PEER" http-get "$G:80" / --timeout 60
exit "$fails"
