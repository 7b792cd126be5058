# Variables above: side (app|linux), lo/hi/res (the search, MiB), headroom (percent
# more memory for the domUs started), count, bytes (the body of each GET), limit
# (seconds a domU has to serve).
now_ms() { read -r up _ < /proc/uptime; s=${up%.*}; c=${up#*.}; echo $((s * 1000 + ${c#0} * 10)); }
say() { echo "density: $*"; }
free_mib() { xl info 2>/dev/null | sed -n 's/^free_memory *: *//p'; }
# The box's own domU stops at once (it was only the box's start); once the box has seen
# it stop it is destroyed, so that it holds no memory.
n=0
while [ $n -lt 150 ]; do
    case "$(xl list "$DOMU_NAME" 2>/dev/null | awk 'NR==2 {print $5}')" in *s*|*c*|"") break ;; esac
    usleep 200000
    n=$((n + 1))
done
sleep 2
xl destroy "$DOMU_NAME" > /dev/null 2>&1
ramdisk=""
if [ "$side" = linux ]; then
    # The box's ramdisk drive: the second virtio drive without a serial (the first is
    # the payload); the box itself removed its copy once its domU was made.
    rd=""
    k=0
    for s in /sys/block/vd*; do
        case "$(cat "$s/serial" 2>/dev/null)" in xenpv-disk*) continue ;; esac
        k=$((k + 1))
        [ $k = 2 ] && rd=/dev/${s##*/}
    done
    [ -n "$rd" ] && cat "$rd" > /run/density.cpio || { say "FAIL no ramdisk drive for the Linux domUs"; exit 3; }
    ramdisk='ramdisk = "/run/density.cpio"'
fi
# DomU I (0: the search's probes) is at 169.254.100.(10 + I) with MAC 00:16:3e:01:HI:LO.
ip_of() { echo "169.254.100.$((10 + $1))"; }
extra_of() {
    if [ "$side" = app ]; then echo "net ip=$1/24"; else echo "console=hvc0 quiet density_ip=$1"; fi
}
# cfg NAME MIB I: the domU's xl config in /run/NAME.cfg.
cfg() {
    cat > "/run/$1.cfg" <<CFG
name = "$1"
type = "pv"
kernel = "/run/kernel"
$ramdisk
memory = $2
vcpus = 1
extra = "$(extra_of "$(ip_of "$3")")"
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "destroy"
vif = ['bridge=xenbr0,mac=$(printf '00:16:3e:01:%02x:%02x' $(($3 / 256)) $(($3 % 256)))']
CFG
}
# gone NAME: the domain is not there (asked twice: xl has been seen to crash here).
gone() {
    xl domid "$1" > /dev/null 2>&1 && return 1
    usleep 300000
    ! xl domid "$1" > /dev/null 2>&1
}
# serves NAME IP LIMIT_S: 0 once a GET of /bytes/$bytes brings the pattern, every byte
# checked (and the appliance's checksum header; busybox httpd sends none), else 1 with
# $why (the domain gone, with its console's last lines; a wrong body; no answer).
# (busybox wget crashes in this dom0: xenbox-peer fetches.)
nohdr=""
[ "$side" = linux ] && nohdr=--no-checksum-header
serves() {
    end=$(($(date +%s) + $3))
    why="no answer within $3 s"
    while [ "$(date +%s)" -lt "$end" ]; do
        if gone "$1"; then
            log=/var/log/xen/console/guest-$1.log
            said=$(grep -m 2 -E 'Kernel panic|Out of memory|does not fit|exit status' "$log" 2>/dev/null)
            [ -n "$said" ] || said=$(tail -n 3 "$log" 2>/dev/null)
            why="the domain is gone: $(echo "$said" | tr '\n' ' ' | cut -c1-400)"
            return 1
        fi
        if "$PEER" wait-up "$2:80" --timeout 2 > /dev/null 2>&1; then
            "$PEER" http-get "$2:80" "/bytes/$bytes" --verify-bytes $nohdr --timeout 60 \
                > /run/get.log 2>&1 && return 0
            why="GET /bytes/$bytes: $(grep '^peer: http-get' /run/get.log | tail -n 1)"
            usleep 500000
        fi
    done
    return 1
}
# probe MIB: a domU of MIB MiB created, asked to serve, destroyed; 0 if it served.
probe() {
    pn=density-probe-$1
    cfg "$pn" "$1" 0
    t0=$(now_ms)
    if ! xl create "/run/$pn.cfg" > /run/xl.log 2>&1; then
        say "probe mib=$1 ok=0 why=xl create: $(tr '\n' ' ' < /run/xl.log | cut -c1-300)"
        xl destroy "$pn" > /dev/null 2>&1
        return 1
    fi
    if serves "$pn" "$(ip_of 0)" "$limit"; then
        say "probe mib=$1 ok=1 ms=$(($(now_ms) - t0))"
        r=0
    else
        say "probe mib=$1 ok=0 why=$why"
        r=1
    fi
    xl destroy "$pn" > /dev/null 2>&1
    rm -f "/var/log/xen/console/guest-$pn.log"
    return $r
}
say "search side=$side lo=$lo hi=$hi res=$res"
