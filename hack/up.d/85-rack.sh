# The rack of virtual servers (docs/lab.md): three QEMU machines on a boot bridge inside the node's
# network namespace, behind IPMI and Redfish BMCs on the node's host address, booting over PXE
# through the release's managed dnsmasq and boot service into the Talos stand-in (hack/guest/).
# Skipped, with the reason, where QEMU cannot boot a machine.
RACK_RUN=$RUN/rack
if ! rack_reason=$(python -m rack check 2>&1); then
  echo "  skipped: QEMU cannot boot a virtual machine here ($rack_reason)"
else
  mkdir -p "$RACK_RUN"
  start rack-assets python -m http.server 16380 --bind "$LAB_HOST" --directory "$REPO/build/lab/guest"
  python -m tests.support.rackup --node-json "$RUN/node/node.json" --assets-url "http://$LAB_HOST:16380" \
    --ipmi-ports 16330,16331,16332 --redfish-port 16343 --out "$RACK_RUN"
  start rack python -m rack serve --config "$RACK_RUN/rack.json" --state-dir "$RACK_RUN" \
    --address "$LAB_HOST" --control-port 16339
  wait_http "http://$LAB_HOST:16339/machines" 60
  wait_http "http://$LAB_HOST:16380/manifest.json" 30
  # Machines reach the host address (guest images) through the node: the host has no route back.
  netns=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["netns"])' "$RUN/node/node.json")
  rule=(POSTROUTING -s 10.198.0.0/24 -d "$LAB_HOST/32" -j MASQUERADE)
  ip netns exec "$netns" iptables -t nat -C "${rule[@]}" 2>/dev/null \
    || ip netns exec "$netns" iptables -t nat -A "${rule[@]}"
  kubectl apply -f "$RACK_RUN/objects.yaml" >/dev/null
  echo "  vm-bios (IPMI, BIOS, approve it by hand), vm-uefi (IPMI, UEFI, approved in advance),"
  echo "  vm-redfish (Redfish, approved by a rule) booting; watch: kubectl get bmh,td -n trellis-system -w"
  echo "  vm-new (IPMI :16332, no BareMetalHost, off): power it on to see it discovered:"
  echo "    curl -X POST -d '{\"power\":\"on\"}' http://$LAB_HOST:16339/machines/vm-new"
  echo "  serial consoles: .run/rack/<machine>.serial   machines: curl http://$LAB_HOST:16339/machines"
fi
