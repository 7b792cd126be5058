# dom0's side of the boot test `domu-net-dhcp` (after metrics_dom0.sh): a DHCP server
# on the box's bridge (busybox udhcpd), the address the appliance publishes in xenstore
# once it has a lease, the runtime's metrics (the same address at attr/vif/0/ipv4/0),
# then ping and HTTP to that address.
mkdir -p /var/lib/misc && touch /var/lib/misc/udhcpd.leases
cat > /run/udhcpd.conf <<CONF
interface xenbr0
start 169.254.100.50
end 169.254.100.60
option subnet 255.255.255.0
CONF
udhcpd -f /run/udhcpd.conf &
ip=""
for i in $(seq 1 300); do
    ip=$(xenstore-read "/local/domain/$DOMID/data/xenpv-app/vif0-ip" 2>/dev/null)
    [ -n "$ip" ] && break
    sleep 1
done
[ -n "$ip" ] || { echo "no address published"; exit 1; }
echo "leased address: $ip"
metrics_wait attr/vif/0/ipv4/0 10
metrics_report "leased=$ip" "ipv4_waited_ms=$waited_ms"
ping -c 5 -W 5 "$ip" || exit 1
"$PEER" http-get "$ip:80" / --timeout 60
