# BareMetalHost: the emulated BMCs behind docs/examples/baremetalhost-*.yaml — an IPMI BMC
# (pyghmi-based emulator) for server1, Redfish over HTTPS (sushy-tools --fake, lab certificate) for
# server2 and Redfish over HTTP for server3.
BMH_RUN=$RUN/baremetalhost
mkdir -p "$BMH_RUN"
cat > "$BMH_RUN/ipmi-systems.json" <<JSON
{"systems": [
  {"name": "server1", "port": 16230, "username": "ADMIN", "password": "change-me", "serial": "LAB-S1"}
]}
JSON
start bmc-ipmi python -m tests.support.ipmi_bmc_emulator --config "$BMH_RUN/ipmi-systems.json" \
  --address "$LAB_HOST" --control-port 16239 --state-file "$BMH_RUN/ipmi-state.json"
sushy_conf() { # NAME UUID PORT [TLS]
  cat > "$BMH_RUN/$1.conf" <<CONF
SUSHY_EMULATOR_FAKE_SYSTEMS = [{"uuid": "$2", "name": "$1", "power_state": "Off", "external_notifier": False, "nics": []}]
SUSHY_EMULATOR_STATE_DIR = "$BMH_RUN/$1-state"
SUSHY_EMULATOR_LISTEN_IP = "$LAB_HOST"
SUSHY_EMULATOR_LISTEN_PORT = $3
CONF
  if [ -n "${4:-}" ]; then
    printf 'SUSHY_EMULATOR_SSL_CERT = "%s"\nSUSHY_EMULATOR_SSL_KEY = "%s"\n' \
      "$LAB/registry/tls.crt" "$LAB/registry/tls.key" >> "$BMH_RUN/$1.conf"
  fi
}
sushy_conf server2 5f0c7a0e-2d3b-4c41-9a52-6d1e8b7f0a02 16443 tls
sushy_conf server3 5f0c7a0e-2d3b-4c41-9a52-6d1e8b7f0a03 16280
start bmc-redfish-server2 sushy-emulator --fake --config "$BMH_RUN/server2.conf"
start bmc-redfish-server3 sushy-emulator --fake --config "$BMH_RUN/server3.conf"
wait_http http://$LAB_HOST:16239/systems 30
wait_http http://$LAB_HOST:16280/redfish/v1/ 30
for _ in $(seq 1 60); do curl -ksf -o /dev/null https://$LAB_HOST:16443/redfish/v1/ && break; sleep 0.5; done
echo "  IPMI BMC udp $LAB_HOST:16230 (server1), Redfish https :16443 (server2), http :16280 (server3)"
