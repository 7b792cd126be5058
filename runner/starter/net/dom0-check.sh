# dom0's check of the appliance (busybox sh, run by the box next to the domU):
#   cargo run -- --domu --net --dom0-script dom0-check.sh ip=169.254.100.2/24
# The box sets DOMID (the domU's) and PEER, dom0's test client, which xenpv-run carries
# in itself (`$PEER --help` lists its commands; `--peer FILE` runs another). Each step
# prints a verdict line; the script's status is the number of steps that failed.
G=169.254.100.2
if ! "$PEER" --help > /dev/null; then
    echo "no test client as \$PEER (its line above says why; see xenpv-run --help)"
    exit 1
fi
fails=0
step() {
    if "$@"; then :; else echo "step failed ($?): $*"; fails=$((fails + 1)); fi
}
# Milliseconds since dom0 booted (busybox's date has no %N).
now_ms() { read -r up _ < /proc/uptime; s=${up%.*}; c=${up#*.}; echo $((s * 1000 + ${c#0} * 10)); }
# Whether the domU still runs (not shut down, crashed or gone).
alive() {
    state=$(xl list "$DOMID" 2>/dev/null | awk 'NR==2 {print $5}')
    case "$state" in *s*|*c*|"") return 1 ;; esac
}

"$PEER" wait-up "$G:80" --timeout 120 || exit 1
# Echo: the bytes come back identical, over one connection and over 32 at once.
step "$PEER" tcp-echo "$G:7" --bytes 1M --timeout 120
step "$PEER" tcp-echo "$G:7" --bytes 64K --conns 32 --together --timeout 120
# HTTP: /hello is 200 (for 32 clients at once), any other path 404.
step "$PEER" http-get "$G:80" /hello --timeout 60
step "$PEER" http-get "$G:80" /hello --conns 32 --timeout 120
step "$PEER" http-get "$G:80" /nothing/here --expect-status 404 --timeout 60
# A clean end: `xl shutdown` stops the domU within 10 s (its status is xenpv-run's).
t0=$(now_ms)
xl shutdown "$DOMID"
while alive && [ $(($(now_ms) - t0)) -lt 30000 ]; do usleep 100000; done
ms=$(($(now_ms) - t0))
if alive || [ "$ms" -gt 10000 ]; then
    echo "xl shutdown: the domU ${state:+is $state }after $ms ms (limit 10 s): FAIL"
    fails=$((fails + 1))
else
    echo "xl shutdown: the domU stopped after $ms ms: ok"
fi
exit "$fails"
