# Network operator: its namespace (Router Secrets without a namespace, the managed dnsmasq's
# ConfigMaps and Deployments). The examples' Routers point at the simulated rack (10-lab.sh).
kubectl create namespace trellis-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
echo "  namespace trellis-system (managed dnsmasq, Router Secrets); see: kubectl get net,dhcpr,rtr -A"
