#!/usr/bin/env bash
# Regenerates go.mod for a Kubernetes release: k8s.io/kubernetes publishes its go.mod with every
# staging module at v0.0.0, so each one is replaced by its published v0.<minor>.<patch>.
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
K8S=${1:?usage: gen-gomod.sh v1.X.Y}
STAGING=v0.${K8S#v1.}
kmod=$(go mod download -json "k8s.io/kubernetes@$K8S" | jq -r .GoMod)
etcd=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' "$kmod")
godebug=$(awk '$1=="godebug"{print $2}' "$kmod")
{
  echo "module trellis.dev/hack/testenv"
  echo
  echo "go $(awk '$1=="go"{print $2; exit}' "$kmod")"
  [ -n "$godebug" ] && { echo; echo "godebug $godebug"; }
  echo
  echo "require ("
  echo "	go.etcd.io/etcd/server/v3 $etcd"
  echo "	k8s.io/component-base $STAGING"
  echo "	k8s.io/kubectl $STAGING"
  echo "	k8s.io/kubernetes $K8S"
  echo ")"
  echo
  echo "replace ("
  awk '$1 ~ /^k8s\.io\// && $2=="v0.0.0" {print $1}' "$kmod" | sort -u | while read -r m; do
    echo "	$m => $m $STAGING"
  done
  echo ")"
} > go.mod
go mod tidy
echo "go.mod pinned to Kubernetes $K8S (etcd $etcd)"
