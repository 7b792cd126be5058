# dom0's side of the boot test `domu-dom0-script-as-xenpv-run`: a script as a user writes
# it for `xenpv-run --domu --net --dom0-script`, in the box as xenpv-run boots it, whose
# $PEER is xenpv-run itself (dom0's test client, carried in the runner). The docs'
# example passes; real $PEER steps against the appliance pass; its last step,
# `$PEER wait-up` to an address with no host, fails with the client's own verdict and
# status (1): never silently, never "no peer". Its status is the script's, and the run's.
G=169.254.100.2
for i in $(seq 1 120); do
    ping -c 1 -W 1 $G > /dev/null 2>&1 && break
done
echo "the appliance answers ping (after $i tries)"
xl network-list $DOMID && ls /sys/class/net/xenbr0/brif || exit 1
echo "the docs' example passed"
$PEER wait-up $G:80 --timeout 60 || exit 3
$PEER tcp-echo $G:7 --bytes 65536 --timeout 60 || exit 4
$PEER http-get $G:80 / --timeout 60 || exit 5
echo "the peer's steps against the appliance passed"
$PEER wait-up 169.254.100.99:80 --timeout 5
