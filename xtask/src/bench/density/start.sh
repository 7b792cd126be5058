say "smallest mib=$hi"
# Start domUs of $mem MiB (the smallest and the headroom, as figures::with_headroom) one
# after another until $count or Xen's memory runs out.
mem=$(((hi * (100 + headroom) + 99) / 100))
f0=$(free_mib)
say "phase2 mib=$mem count=$count free_mib=$f0"
i=1
stop=count
failed=""
start=$(now_ms)
last=$start
while [ "$i" -le "$count" ]; do
    f=$(free_mib)
    if [ -z "$f" ] || [ "$f" -lt "$mem" ]; then
        stop="memory: xl info free_memory ${f:-?} MiB, a domU needs $mem MiB"
        break
    fi
    n=density-$side-$i
    cfg "$n" "$mem" "$i"
    t0=$(now_ms)
    if ! xl create "/run/$n.cfg" > /run/xl.log 2>&1; then
        stop="xl create of domU $i failed (free_memory $f MiB): $(tr '\n' ' ' < /run/xl.log | cut -c1-300)"
        xl destroy "$n" > /dev/null 2>&1
        break
    fi
    if ! serves "$n" "$(ip_of "$i")" "$limit"; then
        say "FAIL up i=$i mib=$mem never served: $why"
        failed=1
        stop="domU $i did not serve"
        break
    fi
    last=$(now_ms)
    say "up i=$i ms=$((last - t0)) free_mib=$f"
    i=$((i + 1))
done
up=$((i - 1))
say "started count=$up of=$count total_ms=$((last - start)) stop=$stop"
say "all-up free_mib=$(free_mib)"
# Every domU again, all of them running.
j=1
bad=0
s0=$(now_ms)
while [ "$j" -le "$up" ]; do
    if serves "density-$side-$j" "$(ip_of "$j")" 60; then
        say "sweep i=$j ok=1"
    else
        say "sweep i=$j ok=0 why=$why"
        bad=$((bad + 1))
    fi
    j=$((j + 1))
done
say "swept count=$up bad=$bad ms=$(($(now_ms) - s0))"
for d in $(xl list 2>/dev/null | awk 'NR > 1 && $1 ~ /^density-/ {print $1}'); do
    xl destroy "$d" > /dev/null 2>&1
done
say "done side=$side"
[ -z "$failed" ] && [ "$bad" = 0 ] || exit 4
