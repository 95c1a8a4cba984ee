#!/bin/sh
# NAT router start-up inside a container: name the interfaces by their addresses (never
# assume eth0 is the outside), load the NAT ruleset computed by p2plab, then idle.
# Usage: p2plab-router LAN_IP WAN_IP RULESET_FILE
set -eu
lan_ip=$1 wan_ip=$2 rules=$3
rename() {
    dev=$(ip -o -4 addr show | awk -v ip="$1" '{split($4, a, "/"); if (a[1] == ip) print $2}')
    [ -n "$dev" ] || { echo "p2plab-router: no interface has $1" >&2; exit 1; }
    if [ "$dev" != "$2" ]; then
        ip link set dev "$dev" down
        ip link set dev "$dev" name "$2"
        ip link set dev "$2" up
    fi
}
rename "$lan_ip" lan0
rename "$wan_ip" wan0
# Docker gives even internal networks a default route: a router has only the plan's.
ip route del default 2>/dev/null || true
if [ -n "${DEFAULT_VIA:-}" ]; then ip route add default via "$DEFAULT_VIA"; fi
# ROUTES="10.9.0.0/24 via 203.0.113.5;..." (LANs routed without NAT)
echo "${ROUTES:-}" | tr ';' '\n' | while read -r route; do
    [ -z "$route" ] || ip route add $route
done
nft -f "$rules"
echo "p2plab-router: ready (lan0 $lan_ip, wan0 $wan_ip)"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
