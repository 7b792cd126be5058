# dom0's reading of the guest metrics a xenpv-rt domU publishes in xenstore (the keys
# the xen-guest-agent writes for XAPI): `metrics_wait KEY SECONDS` waits for a key and
# sets `waited_ms` (the row judges it: a key missing is not the script's failure);
# `metrics_wait_gone KEY SECONDS` waits for one to be removed; `metrics_report [FIELDS]`
# prints them all as one report line, `xenstore: metrics …`, for the row to check
# (FIELDS, `name=value` words, added to it).
MD=/local/domain/$DOMID
xsr() { xenstore-read "$MD/$1" 2>/dev/null; }
# A value quoted as a report's value (always quoted: it may be empty or have spaces).
q() { printf '"%s"' "$(printf %s "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
# Milliseconds since dom0 booted.
metrics_ms() { read -r up _ < /proc/uptime; s=${up%.*}; c=${up#*.}; echo $((s * 1000 + ${c#0} * 10)); }
metrics_wait() {
    t0=$(metrics_ms)
    while [ -z "$(xsr "$1")" ] && [ $(($(metrics_ms) - t0)) -lt $(($2 * 1000)) ]; do
        usleep 100000
    done
    waited_ms=$(($(metrics_ms) - t0))
    if [ -z "$(xsr "$1")" ]; then
        echo "metrics: no $1 after $2 s"
        return 1
    fi
}
# Wait up to $2 s for key $1 to be gone; sets `waited_ms`.
metrics_wait_gone() {
    t0=$(metrics_ms)
    while xenstore-exists "$MD/$1" 2>/dev/null && [ $(($(metrics_ms) - t0)) -lt $(($2 * 1000)) ]; do
        usleep 100000
    done
    waited_ms=$(($(metrics_ms) - t0))
    ! xenstore-exists "$MD/$1" 2>/dev/null
}
metrics_report() {
    xl_mem=$(xl list "$DOMID" 2>/dev/null | awk 'NR==2 {print $3}')
    echo "xenstore: metrics installed=$(q "$(xsr attr/PVAddons/Installed)")" \
        "major=$(q "$(xsr attr/PVAddons/MajorVersion)")" \
        "minor=$(q "$(xsr attr/PVAddons/MinorVersion)")" \
        "micro=$(q "$(xsr attr/PVAddons/MicroVersion)")" \
        "build=$(q "$(xsr attr/PVAddons/BuildVersion)")" \
        "os_distro=$(q "$(xsr data/os_distro)")" \
        "os_name=$(q "$(xsr data/os_name)")" \
        "os_majorver=$(q "$(xsr data/os_majorver)")" \
        "os_minorver=$(q "$(xsr data/os_minorver)")" \
        "os_uname=$(q "$(xsr data/os_uname)")" \
        "meminfo_total=$(q "$(xsr data/meminfo_total)")" \
        "meminfo_free=$(q "$(xsr data/meminfo_free)")" \
        "vif0=$(q "$(xsr attr/vif/0)")" \
        "vif0_ipv4_0=$(q "$(xsr attr/vif/0/ipv4/0)")" \
        "vif0_ipv4_1=$(q "$(xsr attr/vif/0/ipv4/1)")" \
        "updated=$(q "$(xsr data/updated)")" \
        "xl_mem_mib=$(q "$xl_mem")" "$@"
}
