# The test node (hack/labnode): containerd, kubelet and kube-proxy in the network namespace
# behind the veth whose host end the apiserver advertises. `make down` removes it.
python -m labnode up --dir "$RUN/node" --kubeconfig "$KUBECONFIG" | sed 's/^/  /'
# Services Pods must reach (simulators, BMC emulators) listen on the host end of the veth.
LAB_HOST=${LAB_HOST:-$(jq -r .host_ip "$RUN/node/node.json")}
echo "  Pods: kubectl get pods -A -o wide   node: .run/node/node.json   logs: .run/node/logs/"
echo "  host end of the node's veth (LAB_HOST): $LAB_HOST"
