# dom0's side of the boot test `domu-blk-files` (run by the box next to the domU, with
# PEER set). xtask appends a `check PATH LEN FNV` line per file of the image (its length
# and FNV-1a 64, from the file the image was built from) and the exit line. Every
# client prints one verdict line; the exit status is the number of steps that failed.
G=169.254.100.2
fails=0
step() {
    if "$@"; then :; else echo "step failed ($?): $*"; fails=$((fails + 1)); fi
}
# GET /files/PATH: status 200, Content-Length LEN, the body's FNV and the header's.
check() {
    step "$PEER" http-get "$G:80" "/files/$1" --expect-file "$2:$3" --timeout 600
}
step "$PEER" wait-up "$G:80" --timeout 300
step "$PEER" http-get "$G:80" /files/no/such/file --expect-status 404 --timeout 60
step "$PEER" http-get "$G:80" /files/docs --expect-status 404 --timeout 60
step "$PEER" http-get "$G:80" /files/docs/../page --expect-status 400 --timeout 60
