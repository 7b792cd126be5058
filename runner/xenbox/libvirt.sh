# Sourced by the box's /init for a payload with toolstack=libvirt (the box's libvirt
# variant carries it at /etc/xenbox/libvirt.sh): start libvirtd with its libxl driver,
# and make domu_create a `virsh create` of a domain XML made from the payload header
# instead of `xl create`. xl and libvirt both drive libxl: the domain is libvirt's, and
# xl only observes it (`xl list`, `xl domid`), as init does.
[ "$(get bench)" = 1 ] && fail "toolstack=libvirt: bench mode creates its domUs with xl"
[ -n "$(get disks)" ] && fail "toolstack=libvirt: the box hands disks to a domU with xl only"
# No dbus, polkit or systemd here: libvirtd.conf asks for none (unix socket, no auth).
mkdir -p /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt
export LIBVIRT_DEFAULT_URI=xen:///system LC_ALL=C
lv_t0=$(date +%s)
libvirtd --daemon --config /etc/libvirt/libvirtd.conf --pid-file /run/libvirtd.pid \
    > /run/libvirtd.out 2>&1 \
    || fail "libvirtd: $(tr '\n' ' ' < /run/libvirtd.out) $(tail -n 20 /var/log/libvirt/libvirtd.log 2>/dev/null | tr '\n' ' ')"
# Up once virsh gets an answer from the libxl driver (60 s at most: QEMU without KVM).
lv_up=""
while [ $(($(date +%s) - lv_t0)) -lt 60 ]; do
    if virsh version > /run/virsh-version.log 2>&1; then
        lv_up=yes
        break
    fi
    usleep 300000
done
# What libvirt describes the host CPU from (Xen's physinfo hw_cap words).
say "xl info: $(xl info 2>/dev/null | grep '^hw_caps' | tr -s ' ')"
[ -n "$lv_up" ] || fail "libvirtd: virsh version after 60 s: $(tr '\n' ' ' < /run/virsh-version.log) libvirtd.log: $(tail -n 20 /var/log/libvirt/libvirtd.log 2>/dev/null | tr '\n' ' ')"
say "libvirtd up after $(($(date +%s) - lv_t0)) s: $(tr -s ' \n' ' ' < /run/virsh-version.log)"

# The domain XML (libvirt's xen driver, a PV guest): what xl's config says, in
# libvirt's words; rebooting restarts it, as a toolstack user would want.
libvirt_xml() {
    lv_cmdline=$(echo "$extra" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g')
    echo "<domain type='xen'>"
    echo "  <name>$name</name>"
    echo "  <memory unit='MiB'>$mem</memory>"
    echo "  <currentMemory unit='MiB'>$mem</currentMemory>"
    echo "  <vcpu>1</vcpu>"
    echo "  <os>"
    echo "    <type arch='x86_64' machine='xenpv'>linux</type>"
    echo "    <kernel>/run/kernel</kernel>"
    [ -n "$ramdisk" ] && echo "    <initrd>/run/ramdisk.img</initrd>"
    echo "    <cmdline>$lv_cmdline</cmdline>"
    echo "  </os>"
    echo "  <on_poweroff>destroy</on_poweroff>"
    echo "  <on_reboot>restart</on_reboot>"
    echo "  <on_crash>destroy</on_crash>"
    echo "  <devices>"
    echo "    <console type='pty'/>"
    lv_i=0
    while [ "$lv_i" -lt "${vifs:-0}" ]; do
        echo "    <interface type='bridge'>"
        echo "      <source bridge='xenbr0'/>"
        echo "      <mac address='00:16:3e:00:00:$(printf %02x $((2 + lv_i)))'/>"
        echo "    </interface>"
        lv_i=$((lv_i + 1))
    done
    echo "  </devices>"
    echo "</domain>"
}

# init's domU creation: the XML at /run/domu.xml (a dom0 script may create the domain
# again from it), then `virsh create`, its output on the console too.
domu_create() {
    libvirt_xml > /run/domu.xml
    virsh create /run/domu.xml > /run/virsh-create.log 2>&1
    lv_rc=$?
    sed -e '/^$/d' -e 's/^/xenbox: virsh create: /' /run/virsh-create.log > /dev/console
    cat /run/virsh-create.log
    if [ "$lv_rc" != 0 ]; then
        tail -n 20 /var/log/libvirt/libvirtd.log 2>/dev/null | sed 's/^/libvirtd.log: /'
        tail -n 20 "/var/log/libvirt/libxl/$name.log" 2>/dev/null | sed 's/^/libxl.log: /'
    fi
    return "$lv_rc"
}
say "toolstack libvirt: the domU is created with virsh create /run/domu.xml"
