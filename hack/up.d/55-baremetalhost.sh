# BareMetalHost: emulated BMCs for a demo rack — two IPMI BMCs (pyghmi-based emulator) and one
# Redfish BMC (sushy-tools --fake) — and three hosts in namespace trellis-bmh-demo wired to them.
BMH_RUN=$RUN/baremetalhost
mkdir -p "$BMH_RUN"
cat > "$BMH_RUN/ipmi-systems.json" <<JSON
{"systems": [
  {"name": "demo-ipmi-0", "port": 16230, "username": "admin", "password": "password", "serial": "DEMO-0"},
  {"name": "demo-ipmi-1", "port": 16231, "username": "admin", "password": "password", "serial": "DEMO-1"}
]}
JSON
start bmc-ipmi python -m tests.support.ipmi_bmc_emulator --config "$BMH_RUN/ipmi-systems.json" \
  --control-port 16239 --state-file "$BMH_RUN/ipmi-state.json"
cat > "$BMH_RUN/sushy.conf" <<CONF
SUSHY_EMULATOR_FAKE_SYSTEMS = [{"uuid": "8c3b3a1e-9a43-4f57-8d0e-6f1a5e6d0b01", "name": "demo-redfish-0",
                                "power_state": "Off", "external_notifier": False, "nics": []}]
SUSHY_EMULATOR_STATE_DIR = "$BMH_RUN/sushy-state"
SUSHY_EMULATOR_LISTEN_IP = "127.0.0.1"
SUSHY_EMULATOR_LISTEN_PORT = 16280
CONF
start bmc-redfish sushy-emulator --fake --config "$BMH_RUN/sushy.conf"
wait_http http://127.0.0.1:16239/systems 30
wait_http http://127.0.0.1:16280/redfish/v1/ 30
kubectl create namespace trellis-bmh-demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n trellis-bmh-demo -f - >/dev/null <<YAML
apiVersion: v1
kind: Secret
metadata: {name: demo-bmc}
stringData: {username: admin, password: password}
---
apiVersion: trellis.dev/v1alpha1
kind: BareMetalHost
metadata: {name: demo-ipmi-0}
spec:
  bmc: {address: "ipmi://127.0.0.1:16230", credentialsName: demo-bmc}
  bootMACAddress: "52:54:00:de:00:00"
  online: true
---
apiVersion: trellis.dev/v1alpha1
kind: BareMetalHost
metadata: {name: demo-ipmi-1}
spec:
  bmc: {address: "ipmi://127.0.0.1:16231", credentialsName: demo-bmc}
  bootMACAddress: "52:54:00:de:00:01"
  online: false
---
apiVersion: trellis.dev/v1alpha1
kind: BareMetalHost
metadata: {name: demo-redfish-0}
spec:
  bmc: {address: "redfish+http://127.0.0.1:16280/redfish/v1/Systems/8c3b3a1e-9a43-4f57-8d0e-6f1a5e6d0b01", credentialsName: demo-bmc}
  bootMACAddress: "52:54:00:de:00:10"
  online: true
YAML
echo "  IPMI BMCs on udp 127.0.0.1:16230-16231 (control :16239), Redfish BMC on :16280; hosts in trellis-bmh-demo"
