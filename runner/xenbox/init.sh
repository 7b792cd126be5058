#!/bin/busybox sh
# /init of the Xen-in-a-box dom0 (Debian's Linux as PV dom0): start Xen's toolstack
# daemons, boot the payload as a domU with xl, stream its console, check its xenstore
# key, report its shutdown, and power the box off with a status the host receives.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/usr/sbin:/usr/lib/xen-4.17/bin
say() { echo "xenbox: $*"; }
finish() {
    say "exit $1"
    sync
    # isa-debug-exit at port 0xf4: QEMU exits with (status << 1) | 1.
    printf "$(printf '\\%03o' "$1")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
    echo o > /proc/sysrq-trigger
    sleep 30
}
fail() { say "FAIL $*"; finish 120; }

mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp /var/lock /var/lib/xen /var/log/xen/console
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o size=95% tmpfs /run
mkdir -p /run/xen /run/xenstored
[ -e /var/run ] || ln -s /run /var/run
echo 1 > /proc/sys/kernel/sysrq
for m in $(cat /etc/xenbox/modules); do
    insmod "/lib/modules/$m" || fail "insmod $m"
done
mount -t xenfs xenfs /proc/xen || fail "mount xenfs"
xenstored --pid-file=/run/xenstored.pid || fail "xenstored"
xen-init-dom0 > /run/xen-init-dom0.log 2>&1 || fail "xen-init-dom0: $(cat /run/xen-init-dom0.log)"
xenconsoled --log=guest --log-dir=/var/log/xen/console --pid-file=/run/xenconsoled.pid \
    || fail "xenconsoled"
say "dom0 ready"
# The domUs' network: a bridge in dom0 that the vif-bridge hotplug script puts every vif
# on, dom0 169.254.100.1/24 there. Nothing else is on it: QEMU gives the box no network
# device (-nic none), so it leads nowhere outside. (A new bridge runs no STP: its ports
# forward at once. busybox's brctl has only addbr/delbr/addif/delif.)
br_err=$({ brctl addbr xenbr0 && ip addr add 169.254.100.1/24 dev xenbr0 \
    && ip link set xenbr0 up; } 2>&1) \
    || fail "bridge xenbr0 (169.254.100.1/24): $br_err"

# The virtio drives: the payload (a 4 KiB text header + the kernel, ...) and the ramdisk,
# if any, have no serial, in that order (/dev/vda, /dev/vdb); the domU's disks (--disk,
# at PCI slots above those) have the serial xenpv-diskN.
payload_dev=""
ramdisk_dev=""
for s in /sys/block/vd*; do
    [ -e "$s" ] || continue
    case "$(cat "$s/serial" 2>/dev/null)" in
        xenpv-disk*) ;;
        *)
            if [ -z "$payload_dev" ]; then
                payload_dev=/dev/${s##*/}
            elif [ -z "$ramdisk_dev" ]; then
                ramdisk_dev=/dev/${s##*/}
            fi
            ;;
    esac
done
[ -n "$payload_dev" ] && [ -b "$payload_dev" ] || fail "no payload disk"
hdr=$(head -c 4096 "$payload_dev" | tr -d '\000')
get() { echo "$hdr" | sed -n "s/^$1=//p"; }
name=$(get name); klen=$(get kernel_len); mem=$(get memory); extra=$(get extra); limit=$(get timeout)
follow_s=$(get follow_s)
# A run that saves, restores or migrates its domU (header migrate=1): the runner gave the
# box room for a second copy of the domU and the hypervisor with shadow paging (which
# log-dirty, and so a live migration of a PV guest, needs); said here with what Xen has.
if [ "$(get migrate)" = 1 ]; then
    say "migrate=1: room for two copies of the domU; $(xl info 2>/dev/null | grep -E '^(xen_version|virt_caps)' | tr -s ' ' | tr '\n' ' ')"
fi
dd if="$payload_dev" bs=4096 skip=1 2>/dev/null | head -c "$klen" > /run/kernel || fail "reading the kernel"
# The peer (header peer_len=N): dom0's test client (tools/xenbox-peer, or xenpv-run
# itself, a multi-call binary), a dom0 script's $PEER. Without one (a runner-library
# caller that set no BoxImage::peer) $PEER is a stub that fails loudly: an empty file
# would run as an empty script, status 0, and every `$PEER ...` step would "pass".
plen=$(get peer_len)
has_peer=""
if [ "${plen:-0}" -gt 0 ]; then
    dd if="$payload_dev" bs=4096 skip=$((1 + (klen + 4095) / 4096)) 2>/dev/null | head -c "$plen" > /run/peer
    has_peer=1
else
    cat > /run/peer <<'STUB'
#!/bin/sh
echo "\$PEER: no peer program in this run: its runner carried none (xenpv-run --domu carries itself, cargo xtask run tools/xenbox-peer; a runner-library caller sets BoxImage::peer)" >&2
exit 127
STUB
fi
chmod +x /run/peer
# A dom0 script (header script_len=N), after the peer on the next 4 KiB boundary.
slen=$(get script_len)
if [ -n "$slen" ]; then
    dd if="$payload_dev" bs=4096 skip=$((1 + (klen + 4095) / 4096 + (plen + 4095) / 4096)) 2>/dev/null \
        | head -c "$slen" > /run/dom0-script
    [ "$(wc -c < /run/dom0-script)" = "$slen" ] || fail "reading the dom0 script"
fi
# The domU's vifs (header vifs=N): each on xenbr0, MACs 00:16:3e:00:00:02 on.
vifs=$(get vifs)
vif_cfg=""
if [ -n "$vifs" ] && [ "$vifs" -gt 0 ]; then
    vi=0
    v=""
    while [ "$vi" -lt "$vifs" ]; do
        v="$v${v:+, }'bridge=xenbr0,mac=00:16:3e:00:00:$(printf %02x $((2 + vi)))'"
        vi=$((vi + 1))
    done
    vif_cfg="vif = [$v]"
fi
# The domU's disks (header disks=A,A,..., one access mode w or r per disk): disk N is the
# drive with serial xenpv-diskN, handed to the domU as xvda, xvdb, ... (xl's phy:, the
# block hotplug script, xen-blkback); a dom0 script gets it as DISKN.
disks=$(get disks)
disk_cfg=""
disk_env=""
if [ -n "$disks" ]; then
    di=0
    d=""
    for access in $(echo "$disks" | tr ',' ' '); do
        case "$access" in w|r) ;; *) fail "disk $di: access mode '$access' (want w or r)" ;; esac
        dev=""
        for s in /sys/block/vd*; do
            [ "$(cat "$s/serial" 2>/dev/null)" = "xenpv-disk$di" ] && dev=/dev/${s##*/}
        done
        [ -n "$dev" ] && [ -b "$dev" ] \
            || fail "disk $di: no drive with serial xenpv-disk$di (serials: $(cat /sys/block/vd*/serial 2>/dev/null | tr '\n' ' '))"
        vdev=xvd$(echo abcdefgh | cut -c$((di + 1)))
        d="$d${d:+, }'phy:$dev,$vdev,$access'"
        disk_env="$disk_env DISK$di=$dev"
        say "domU disk $di: $dev ($vdev, $access)"
        di=$((di + 1))
    done
    disk_cfg="disk = [$d]"
fi
ramdisk=""
if [ -n "$ramdisk_dev" ]; then
    cat "$ramdisk_dev" > /run/ramdisk.img || fail "reading the ramdisk"
    ramdisk='ramdisk = "/run/ramdisk.img"'
fi
# The toolstack that creates the domU (header toolstack=): xl, or libvirt (only the
# box's libvirt variant carries it: libvirt.sh starts libvirtd and makes domu_create a
# `virsh create`).
domu_create() { xl create /run/domu.cfg; }
case "$(get toolstack)" in
    "" | xl) ;;
    libvirt)
        [ -f /etc/xenbox/libvirt.sh ] \
            || fail "toolstack=libvirt, but this box has no libvirt (its libvirt variant has)"
        . /etc/xenbox/libvirt.sh
        ;;
    *) fail "toolstack=$(get toolstack): not xl or libvirt" ;;
esac
# The domU's xl config: its name, and what xl does when it stops (preserve it to read
# its state and keys, or destroy it so that `xl create -F` returns; $3, on_reboot:
# restart it, a new domain under the same name, which the box follows).
write_cfg() {
    cat > /run/domu.cfg <<CFG
name = "$1"
type = "pv"
kernel = "/run/kernel"
$ramdisk
memory = $mem
vcpus = 1
extra = "$extra"
on_poweroff = "$2"
on_reboot = "${3:-$2}"
on_crash = "$2"
CFG
    if [ -n "$vif_cfg" ]; then echo "$vif_cfg" >> /run/domu.cfg; fi
    if [ -n "$disk_cfg" ]; then echo "$disk_cfg" >> /run/domu.cfg; fi
}
# Bench mode (header bench=1, runs=N, run_timeout=S): start the domU N times in a row,
# each with `xl create -F` (which returns once the domain is gone: every on_* action is
# destroy), timed in dom0 from just before xl create to xl's return. Each run is said as
# `xenbox: bench run I create_to_shutdown_ms=MS reason=R` (or `... FAIL why`) followed by
# its own console lines. Every wait has a deadline: a run's own limit and the box's.
if [ "$(get bench)" = 1 ]; then
    runs=$(get runs); run_limit=$(get run_timeout)
    # busybox's date has no %N: /proc/uptime (10 ms steps), read by the shell itself so
    # no fork lies between the clock and xl.
    now_ms() { read -r up _ < /proc/uptime; s=${up%.*}; c=${up#*.}; echo $((s * 1000 + ${c#0} * 10)); }
    bench_end=$(($(date +%s) + limit - 30))
    failed=0
    i=1
    while [ "$i" -le "$runs" ]; do
        dname="$name-$i"
        log=/var/log/xen/console/guest-$dname.log
        rm -f /run/xl.log /run/xl.rc /run/xl.end /run/xl.pid "$log"
        write_cfg "$dname" destroy
        started=$(date +%s)
        run_end=$((started + run_limit))
        [ "$run_end" -gt "$bench_end" ] && run_end=$bench_end
        read -r up _ < /proc/uptime; s=${up%.*}; c=${up#*.}; t0=$((s * 1000 + ${c#0} * 10))
        # The end time is taken in the subshell the moment xl returns; .rc is written
        # last, so .end is complete when .rc appears. xl's pid lets a stuck xl be killed.
        (
            xl create -F /run/domu.cfg > /run/xl.log 2>&1 &
            echo $! > /run/xl.pid
            wait $!
            rc=$?
            now_ms > /run/xl.end
            echo "$rc" > /run/xl.rc
        ) &
        bg=$!
        while [ ! -s /run/xl.rc ] && [ "$(date +%s)" -lt "$run_end" ]; do
            usleep 50000
        done
        if [ ! -s /run/xl.rc ]; then
            xl destroy "$dname" > /dev/null 2>&1
            # xl create -F returns once the domain is gone; if it does not, it is killed.
            n=0
            while [ ! -s /run/xl.rc ] && [ $n -lt 100 ]; do usleep 100000; n=$((n + 1)); done
            [ -s /run/xl.rc ] || kill -9 "$(cat /run/xl.pid)" 2>/dev/null
            wait "$bg"
            say "bench run $i FAIL domU still running after $(($(date +%s) - started)) s (destroyed)"
            failed=$((failed + 1))
        elif wait "$bg"; [ "$(cat /run/xl.rc)" != 0 ]; then
            say "bench run $i FAIL xl create -F: status $(cat /run/xl.rc): $(tr '\n' ' ' < /run/xl.log)"
            xl destroy "$dname" > /dev/null 2>&1
            failed=$((failed + 1))
        else
            reason=$(sed -n 's/.*has shut down, reason code \([0-9]*\).*/\1/p' /run/xl.log | tail -1)
            say "bench run $i create_to_shutdown_ms=$(($(cat /run/xl.end) - t0)) reason=${reason:-?}"
        fi
        # xenconsoled may still be writing the domain's last bytes: wait until the log
        # has not grown for 0.4 s (at most 5 s), then show the whole run's console.
        prev=-1; same=0; n=0
        while [ $n -lt 25 ] && [ $same -lt 2 ]; do
            size=$(wc -c < "$log" 2>/dev/null || echo 0)
            if [ "$size" = "$prev" ]; then same=$((same + 1)); else same=0; fi
            prev=$size
            usleep 200000
            n=$((n + 1))
        done
        [ -f "$log" ] && sed 's/^/domU| /' "$log"
        rm -f "$log"
        i=$((i + 1))
    done
    say "bench done runs=$runs failed=$failed"
    if [ "$failed" = 0 ]; then finish 0; else finish 1; fi
    # finish does not come back (the exit device stops QEMU); never fall through.
    while :; do sleep 60; done
fi
write_cfg "$name" preserve restart
say "xl create (memory ${mem} MiB, ramdisk $([ -n "$ramdisk" ] && wc -c < /run/ramdisk.img || echo none) bytes)"
[ -n "$vif_cfg" ] && say "domU network: $vif_cfg (dom0 169.254.100.1/24 on xenbr0)"
[ -n "$disk_cfg" ] && say "domU disks: $disk_cfg"
log=/var/log/xen/console/guest-$name.log
# xl's domain-monitoring child has been seen to abort in this dom0 ("corrupted
# double-linked list", libxl: "daemonizing child died due to fatal signal Aborted")
# before the domain ran: that is the toolstack's failure, not the guest's, so it gets one
# more try, said on the console; a second failure fails the run.
created=no
for attempt in 1 2; do
    if domu_create > /run/xl.log 2>&1; then
        created=yes
        break
    fi
    say "xl create failed (attempt $attempt): $(tr '\n' ' ' < /run/xl.log)"
    xl destroy "$name" > /dev/null 2>&1
    sleep 1
done
[ "$created" = yes ] || fail "xl create: $(cat /run/xl.log)"
rm -f /run/ramdisk.img
# xl can answer before the new domain is listed: ask again for a while, never go on
# without an id (an empty one would make `xl list` report dom0).
id=""
for i in $(seq 1 50); do
    id=$(xl domid "$name" 2>/dev/null)
    [ -n "$id" ] && break
    usleep 200000
done
[ -n "$id" ] || fail "no domain id for $name after xl create: $(xl list 2>&1)"
say "domU $name is domain $id"
touch "$log"
# A domain migrated in (`xl migrate`, `xl migrate-receive`) is created as NAME--incoming
# and renamed once it runs: xenconsoled names a console log after the domain's name when
# it opens it, so the new domain's first lines land in this one (the box sends
# xenconsoled SIGHUP after each follow, which reopens every log under its current name).
ilog=/var/log/xen/console/guest-$name--incoming.log
# Stream the domU's console as xenconsoled logs it. One loop in this shell, no pipeline
# of background processes: under load a pipeline could start late or be killed before
# it printed anything. Complete lines are shown as they arrive (`wc -l` counts them),
# the last partial line at the end; nothing is shown twice and nothing is skipped.
shown=0
ishown=0
show_new() {
    total=$(wc -l < "$log" 2>/dev/null || echo 0)
    if [ "$total" -gt "$shown" ]; then
        sed -n "$((shown + 1)),${total}p" "$log" | sed 's/^/domU| /'
        shown=$total
    fi
    [ -f "$ilog" ] || return 0
    total=$(wc -l < "$ilog" 2>/dev/null || echo 0)
    if [ "$total" -gt "$ishown" ]; then
        sed -n "$((ishown + 1)),${total}p" "$ilog" | sed 's/^/domU| /'
        ishown=$total
    fi
}
# The domain the box watches changes under the same name: after `xl reboot` (on_reboot =
# "restart": xl destroys it and creates it again), `xl restore` of a saved domU, or a
# localhost `xl migrate` (the sender's domain is renamed NAME--migratedaway and destroyed,
# the receiver's NAME--incoming becomes NAME). When the tracked domain has shut down for
# a reboot (reason 1; xl's state then reads `--psr-`) or a suspend (reason 2), or is gone
# (it may go between two questions), wait for the name's new id (the console streamed
# meanwhile) and follow it: 0 then. A suspended domain that runs again under its own id
# (`xl save -c`, a migration that failed and resumed at the sender) is followed as it is:
# 0. Any other reason, or no new domain in time (30 s after a reboot; after a suspend or
# a disappearance FOLLOW_S, header follow_s=, default 300 s, as `xl save` then
# `xl restore` may be minutes apart): 1.
follow_reboot() {
    r=""
    if [ -n "$1" ]; then
        r=$(xl list -v "$id" 2>/dev/null | awk 'NR==2 {print $8}')
        [ -z "$r" ] || [ "$r" = 1 ] || [ "$r" = 2 ] || return 1
    fi
    wait_s=30
    [ "$r" = 1 ] || wait_s=${follow_s:-300}
    n=0
    while [ $n -lt $((wait_s * 5)) ]; do
        nid=$(xl domid "$name" 2>/dev/null)
        if [ -n "$nid" ] && [ "$nid" != "$id" ]; then
            # Gone before its reason could be read (r empty): a reboot, in practice. xl
            # re-creates a rebooting domain within one poll, while a saved or migrating
            # domain stays suspended (reason 2, then r=gone) for the seconds its memory
            # takes. It is waited for as long as a suspend all the same.
            if [ "$r" = 1 ] || [ -z "$r" ]; then
                say "domU $name rebooted: now domain $nid"
            else
                say "domU $name resumed: now domain $nid"
            fi
            id=$nid
            kill -HUP "$(cat /run/xenconsoled.pid 2>/dev/null)" 2>/dev/null
            return 0
        fi
        if [ "$r" = 2 ]; then
            st=$(xl list "$id" 2>/dev/null | awk 'NR==2 {print $5}')
            case "$st" in
                "") r=gone ;;
                *s*|*c*) ;;
                *)
                    say "domU $name resumed in place: domain $id"
                    return 0
                    ;;
            esac
        fi
        show_new
        # With a dom0 script: its lines keep coming, and a script that has ended (5 s
        # ago) or the run's deadline ends the wait, as nothing else would bring a domain.
        if [ -n "$slen" ]; then
            show_script
            [ -s /run/dom0-script.rc ] && [ $n -ge 25 ] && break
            [ "$(date +%s)" -ge "${deadline:-0}" ] && [ -n "$deadline" ] && break
        fi
        usleep 200000
        n=$((n + 1))
    done
    say "domU $name: domain $id ended (state ${1:-gone}) and no new domain of that name came within $((n / 5)) s"
    return 1
}
# Wait for the domU to shut down (state flag s or c). The limit is wall-clock time, with
# room left before the host's own limit, so a domU that never stops is reported here.
start=$(date +%s)
if [ -z "$slen" ]; then
while :; do
    show_new
    state=$(xl list "$id" 2>/dev/null | awk 'NR==2 {print $5}')
    case "$state" in *s*|*c*|"") follow_reboot "$state" || break ;; esac
    if [ $(($(date +%s) - start)) -ge $((limit - 30)) ]; then
        say "domU still running after $((limit - 30)) s"
        break
    fi
    usleep 200000
done
else
# With a dom0 script (DOMID: the first domain's id; after an `xl reboot` the script asks
# `xl domid "$DOMU_NAME"` for the new one): it runs in a session of its own (so that it and whatever it left
# running can be stopped), its output into a file streamed like the console, `dom0| `
# lines. Its status is written (last, by rename) when it ends. The domU and the script
# are watched in one loop, each until it ends, under one deadline: when dom0 has been up
# for the run's limit minus 40 s (the host counts from QEMU's start, a little earlier),
# which leaves time to stop both, show the last lines and report.
slog=/run/dom0-script.log
rm -f /run/dom0-script.rc /run/dom0-script.pid
: > "$slog"
(
    for kv in $disk_env; do export "$kv"; done
    DOMID=$id DOMU_NAME=$name PEER=/run/peer setsid /bin/sh /run/dom0-script \
        < /dev/null > "$slog" 2>&1 &
    echo $! > /run/dom0-script.pid
    wait $!
    echo $? > /run/dom0-script.rc.tmp
    mv /run/dom0-script.rc.tmp /run/dom0-script.rc
) &
say "dom0-script started (DOMID=$id DOMU_NAME=$name$disk_env)"
sshown=0
# Complete lines as they come (counted with `wc -l`, as the console's). Programs have
# been seen to crash at random in this dom0 (a bad TLS pointer): the lines are cut to a
# file first and counted as shown only once that worked, so a crash does not drop them.
show_script() {
    stotal=$(wc -l < "$slog" 2>/dev/null || echo 0)
    if [ "$stotal" -gt "$sshown" ] \
        && sed -n "$((sshown + 1)),${stotal}p" "$slog" > /run/dom0-script.new \
        && sed 's/^/dom0| /' /run/dom0-script.new; then
        sshown=$stotal
    fi
}
# Stop the script's session (TERM, then KILL after 2 s): the script at its deadline, or
# what it left running in the background once it ended.
stop_script() {
    spid=$(cat /run/dom0-script.pid 2>/dev/null)
    [ -n "$spid" ] || return 0
    kill -TERM -"$spid" 2>/dev/null
    n=0
    while [ ! -s /run/dom0-script.rc ] && [ $n -lt 20 ]; do usleep 100000; n=$((n + 1)); done
    kill -KILL -"$spid" 2>/dev/null
    return 0
}
# The script's last lines, the unfinished one too, then its status.
script_ended() {
    stop_script
    show_script
    if [ -s "$slog" ] && [ -n "$(tail -c 1 "$slog")" ]; then
        echo "dom0| $(tail -n 1 "$slog")"
    fi
    say "dom0-script exit $srs"
}
sdone=no
srs=""
ddone=no
shut_at=""
shut_said=""
read -r up _ < /proc/uptime
deadline=$((start + limit - 40 - ${up%.*}))
while :; do
    show_new
    show_script
    if [ "$sdone" = no ] && [ -s /run/dom0-script.rc ]; then
        read -r srs < /run/dom0-script.rc
        [ -n "$srs" ] || srs=125
        sdone=yes
        script_ended
    fi
    if [ "$ddone" = no ]; then
        state=$(xl list "$id" 2>/dev/null | awk 'NR==2 {print $5}')
        # An empty answer is asked again before the domU counts as gone: xl itself has
        # been seen to crash in this dom0.
        n=0
        while [ -z "$state" ] && [ $n -lt 3 ]; do
            usleep 200000
            state=$(xl list "$id" 2>/dev/null | awk 'NR==2 {print $5}')
            n=$((n + 1))
        done
        case "$state" in
            *s*|*c*|"")
                if ! follow_reboot "$state"; then
                    ddone=yes
                    [ "$sdone" = no ] && say "domU stopped (state=${state:-gone}), the dom0-script goes on"
                fi
                ;;
        esac
    fi
    [ "$sdone" = yes ] && [ "$ddone" = yes ] && break
    now=$(date +%s)
    # xl shutdown waits for the guest to acknowledge the request (a guest without PV
    # control never does): in the background, so the console keeps streaming.
    if [ -n "$shut_at" ] && [ -z "$shut_said" ] && [ -s /run/xl-shutdown.rc ]; then
        shut_said=yes
        read -r shut_rc < /run/xl-shutdown.rc
        [ "$shut_rc" = 0 ] || say "xl shutdown $id: status $shut_rc: $(tr '\n' ' ' < /run/xl-shutdown.log)"
    fi
    if [ "$sdone" = yes ] && [ -z "$shut_at" ]; then
        say "dom0-script done, domU still running: xl shutdown $id"
        rm -f /run/xl-shutdown.rc
        (
            xl shutdown "$id" > /run/xl-shutdown.log 2>&1
            echo $? > /run/xl-shutdown.rc.tmp
            mv /run/xl-shutdown.rc.tmp /run/xl-shutdown.rc
        ) &
        shut_at=$now
    elif [ "$sdone" = yes ] && [ $((now - shut_at)) -ge 60 ]; then
        say "domU did not stop within 60 s of xl shutdown: xl destroy $id"
        xl destroy "$id" 2>&1 | sed 's/^/xenbox: xl destroy: /'
        break
    fi
    if [ "$now" -ge "$deadline" ]; then
        if [ "$sdone" = no ]; then
            say "dom0-script killed at its deadline: $((now - start)) s after the domU started, dom0 up $((limit - 40)) s (the run's limit of $limit s minus 40 s)"
            srs=124
            sdone=yes
            script_ended
        fi
        [ "$ddone" = no ] && say "domU still running after $((now - start)) s (the deadline)"
        break
    fi
    usleep 200000
done
fi
# xenconsoled may still be moving the domU's last bytes into the log: show what comes
# until the log has not grown for a second (at most 30 s), then the unfinished last line.
prev=-1
same=0
n=0
while [ $n -lt 100 ] && [ $same -lt 4 ]; do
    show_new
    size=$(wc -c < "$log" 2>/dev/null || echo 0)
    if [ "$size" = "$prev" ]; then same=$((same + 1)); else same=0; fi
    prev=$size
    usleep 300000
    n=$((n + 1))
done
show_new
sed -n "$((shown + 1)),\$p" "$log" | sed 's/^/domU| /'
reason=$(xl list -v "$id" 2>/dev/null | awk 'NR==2 {print $8}')
say "domU state=$state reason=$reason"
# What the sample app wrote to xenstore, read from dom0's side (a consumer's kernel
# writes no such key: then nothing is said).
st=$(xenstore-read "/local/domain/$id/data/xenpv-app/status" 2>/dev/null)
[ -n "$st" ] && say "xenstore-read /local/domain/$id/data/xenpv-app/status = $st"
# A grant the domU left for dom0: map it as a backend would and check its bytes.
gref=$(xenstore-read "/local/domain/$id/data/xenpv-app/grant-ref" 2>/dev/null)
if [ -n "$gref" ] && [ -n "$has_peer" ]; then
    gfnv=$(xenstore-read "/local/domain/$id/data/xenpv-app/grant-fnv" 2>/dev/null)
    /run/peer "$id" "$gref" "$gfnv" 2>&1 | sed 's/^/xenbox: /'
fi
# The guest's status from its console's own exit line (cross-checked with the reason).
# (A domain that migrated in may have written it to the --incoming log.)
status=$(cat "$log" "$ilog" 2>/dev/null | sed -n 's/^xenpv-rt: exit status \([0-9]*\).*/\1/p' | tail -1)
[ -z "$status" ] && status=125
case "$reason" in
    0) [ "$status" = 0 ] || say "status $status but shutdown reason poweroff" ;;
    1) say "status $status, shutdown reason reboot, but no new domain followed" ;;
    # A crash the toolstack asked for (control/shutdown crash, sysrq c) ends with status 0.
    3) [ "$status" != 0 ] || grep -q "^xenpv-rt: shutdown reason=crash" "$log" \
        || say "status 0 but shutdown reason crash" ;;
esac
# With a dom0 script, the run's status is the guest's if nonzero, else the script's (a
# status the exit device cannot carry, above 127, is 125).
if [ -n "$slen" ] && [ "$status" = 0 ] && [ "$srs" != 0 ]; then
    run_status=$srs
    [ "$srs" -gt 127 ] 2>/dev/null && run_status=125
    say "guest status 0, dom0-script status $srs: run status $run_status"
    status=$run_status
fi
xl destroy "$id" 2>/dev/null
finish "$status"
