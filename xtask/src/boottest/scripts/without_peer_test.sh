# dom0's side of the boot test `domu-dom0-script-without-peer`: a script as a user writes
# it for `xenpv-run --domu --net --dom0-script`, run in a box without dom0's client
# program. The docs' example passes; `$PEER` must fail (the box's stub, status 127), never
# pass silently as an empty file would: its status is the script's, and the run's.
for i in $(seq 1 120); do
    ping -c 1 -W 1 169.254.100.2 > /dev/null 2>&1 && break
done
echo "the appliance answers ping (after $i tries)"
xl network-list $DOMID && ls /sys/class/net/xenbr0/brif || exit 1
echo "the docs' example passed"
$PEER wait-up 169.254.100.99:80 --timeout 5
