"""Network operator: IPAM, DHCP reservations, RouterOS sync and managed dnsmasq."""
