// Command csi-sanity-runner runs the csi-test v5 sanity suite (the same suite as csi-sanity)
// with the idempotency count exposed as a flag: the upstream binary fixes it at 10.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/onsi/ginkgo/v2"
	"k8s.io/klog/v2"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
)

type result struct{ failed bool }

func (r *result) Fail() { r.failed = true }

func main() {
	cfg := sanity.NewTestConfig()
	flag.StringVar(&cfg.Address, "csi.endpoint", "", "CSI endpoint (unix:///path)")
	flag.StringVar(&cfg.TargetPath, "csi.mountdir", cfg.TargetPath, "target path parent for NodePublish")
	flag.StringVar(&cfg.StagingPath, "csi.stagingdir", cfg.StagingPath, "staging path for NodeStage")
	flag.StringVar(&cfg.TestVolumeParametersFile, "csi.testvolumeparameters", "", "YAML file of StorageClass parameters")
	flag.StringVar(&cfg.TestVolumeAccessType, "csi.testvolumeaccesstype", "mount", "mount or block")
	flag.Int64Var(&cfg.TestVolumeSize, "csi.testvolumesize", cfg.TestVolumeSize, "volume size in bytes")
	flag.Int64Var(&cfg.TestVolumeExpandSize, "csi.testvolumeexpandsize", cfg.TestVolumeExpandSize, "expanded size in bytes")
	flag.IntVar(&cfg.IdempotentCount, "csi.idempotentcount", 2, "how often idempotent calls are repeated")
	flag.Parse()
	if cfg.Address == "" {
		fmt.Fprintln(os.Stderr, "--csi.endpoint is required")
		os.Exit(2)
	}
	klog.SetOutput(ginkgo.GinkgoWriter)
	r := &result{}
	sanity.Test(r, cfg)
	if r.failed {
		os.Exit(1)
	}
}
