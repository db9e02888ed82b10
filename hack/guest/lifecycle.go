package main

// The node behind the machine API: ApplyConfiguration, Upgrade, Reset and Version over a state that
// persists (the VM's disk, or --state-dir in api mode), and the reboots, power-offs and wipes
// those calls cause. Talos' own behaviour is cited per call from github.com/siderolabs/talos at
// v1.12.0 (the version pkg/machinery is pinned to in go.mod).

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"gopkg.in/yaml.v3"
)

// faultUpgradeRollback: Upgrade is accepted and the machine reboots, but comes back with the old
// version, as Talos does when the new boot entry fails and the bootloader falls back to the
// previous one (A/B).
const faultUpgradeRollback = "upgrade-rollback"

// nodeState is what survives a reboot.
type nodeState struct {
	Config []byte `json:"config"`
	// Staged is a config applied with mode STAGED: it becomes Config at the next boot.
	Staged []byte `json:"staged,omitempty"`
	// Version is the installed Talos (Version's tag); empty until the first boot records the
	// config's install image tag.
	Version string `json:"version,omitempty"`
	// PendingVersion is what an accepted Upgrade installs; the next boot makes it Version (or
	// rolls back with the upgrade-rollback fault).
	PendingVersion string `json:"pendingVersion,omitempty"`
}

// nodeStore persists nodeState: the VM disk's last 4 MiB (diskStore) or a directory (dirStore).
type nodeStore interface {
	Load() (*nodeState, error)
	Save(*nodeState) error
	// Wipe removes the install: with full, the disk is no longer bootable; without, only the
	// config (Talos' STATE partition) is gone.
	Wipe(full bool) error
}

// boot turns a stored state into the running one, as the next boot of the machine does: a staged
// config becomes the config, a pending upgrade becomes the version (or is rolled back).
func boot(st *nodeState, faults map[string]bool) (*MachineConfig, error) {
	if len(st.Staged) > 0 {
		if _, err := parseConfig(st.Staged); err == nil {
			st.Config = st.Staged
			mark("staged-applied", "sha256", sha256hex(st.Config))
		}
		st.Staged = nil
	}
	cfg, err := parseConfig(st.Config)
	if err != nil {
		return nil, err
	}
	if st.Version == "" {
		st.Version = versionOf(cfg)
	}
	if st.PendingVersion != "" {
		if faults[faultUpgradeRollback] {
			mark("upgrade-rollback", "version", st.Version, "attempted", st.PendingVersion, "fault", faultUpgradeRollback)
		} else {
			mark("upgraded", "from", st.Version, "to", st.PendingVersion)
			st.Version = st.PendingVersion
		}
		st.PendingVersion = ""
	}
	return cfg, nil
}

// lifecycleEvent is what the serving loop does once the API call that caused it has answered.
type lifecycleEvent struct {
	kind   string // reboot, poweroff
	reason string // apply-config, upgrade, reset
	wipe   bool   // reset: wipe before rebooting or powering off
	full   bool   // reset: the whole system disk (else the config only)
}

// callRecord is one line of calls.jsonl (api mode) and the fields of the api-call marker.
type callRecord struct {
	Time     string `json:"time"`
	Method   string `json:"method"`
	Mode     string `json:"mode,omitempty"`
	DryRun   bool   `json:"dry_run,omitempty"`
	Image    string `json:"image,omitempty"`
	Stage    bool   `json:"stage,omitempty"`
	Force    bool   `json:"force,omitempty"`
	Preserve bool   `json:"preserve,omitempty"`
	Graceful *bool  `json:"graceful,omitempty"`
	Reboot   *bool  `json:"reboot,omitempty"`
	Result   string `json:"result"`
	Code     string `json:"code,omitempty"`
	Error    string `json:"error,omitempty"`
}

// node serves Talos' MachineService from a nodeState.
type node struct {
	machine.UnimplementedMachineServiceServer

	mu       sync.Mutex
	store    nodeStore
	st       *nodeState
	cfg      *MachineConfig // the active config (differs from st.Config during a TRY)
	faults   map[string]bool
	events   chan lifecycleEvent
	calls    *os.File // calls.jsonl in api mode, nil in the VM
	cert     tls.Certificate
	tryTimer *time.Timer
	busy     bool // a reboot, power-off or reset is under way
}

func newNode(store nodeStore, st *nodeState, cfg *MachineConfig, faults map[string]bool) *node {
	return &node{store: store, st: st, cfg: cfg, faults: faults, events: make(chan lifecycleEvent, 1)}
}

func sha256hex(b []byte) string {
	c, _ := parseConfig(b)
	if c != nil {
		return c.SHA256
	}
	return ""
}

func actorID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// record prints the api-call marker and appends to calls.jsonl.
func (n *node) record(r callRecord, err error) {
	if err != nil {
		r.Result, r.Code, r.Error = "error", status.Code(err).String(), status.Convert(err).Message()
	}
	r.Time = time.Now().UTC().Format(time.RFC3339Nano)
	// Field order: what was asked first, then result and code, so "result=error code=X" stays together.
	kv := []string{"method", r.Method}
	switch r.Method {
	case "ApplyConfiguration":
		kv = append(kv, "mode", r.Mode)
	case "Upgrade":
		kv = append(kv, "image", r.Image, "staged", strconv.FormatBool(r.Stage), "force", strconv.FormatBool(r.Force),
			"preserve", strconv.FormatBool(r.Preserve))
	case "Reset":
		kv = append(kv, "reboot", strconv.FormatBool(*r.Reboot), "graceful", strconv.FormatBool(*r.Graceful), "mode", r.Mode)
	}
	kv = append(kv, "result", r.Result)
	if r.Code != "" {
		kv = append(kv, "code", r.Code)
	}
	if r.DryRun {
		kv = append(kv, "dry_run", "true")
	}
	mark("api-call", kv...)
	if n.calls != nil {
		b, _ := json.Marshal(r)
		n.mu.Lock()
		_, _ = n.calls.Write(append(b, '\n'))
		n.mu.Unlock()
	}
}

// emit hands ev to the serving loop half a second after the call that caused it has answered:
// stopping the server while the answer is on its way loses its trailers (the client would see
// an error instead of Talos' answer). Talos, too, answers first and reboots seconds later.
func (n *node) emit(ev lifecycleEvent) {
	time.AfterFunc(500*time.Millisecond, func() {
		select {
		case n.events <- ev:
		default: // one is already under way
		}
	})
}

// requireAdmin is Talos' authz for these calls: the client certificate must carry the os:admin
// role (internal/app/machined/internal/server/v1alpha1 authz rules; ErrNotAuthorized is
// PermissionDenied "not authorized").
func requireAdmin(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.PermissionDenied, "not authorized")
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
		for _, o := range ti.State.PeerCertificates[0].Subject.Organization {
			if o == "os:admin" {
				return nil
			}
		}
	}
	return status.Error(codes.PermissionDenied, "not authorized")
}

// Version answers as a Talos node asked directly (no proxying through apid, so no metadata): tag
// is the installed release, the rest describes this binary.
func (n *node) Version(context.Context, *emptypb.Empty) (*machine.VersionResponse, error) {
	n.mu.Lock()
	tag := n.st.Version
	n.mu.Unlock()
	return versionResponse(tag), nil
}

// ApplyConfiguration follows v1alpha1_server.go ApplyConfiguration at v1.12.0:
//   - data that is not a machine config: InvalidArgument with the loader's error;
//   - NO_REBOOT and TRY: CanApplyImmediate must pass, else InvalidArgument "this config change
//     can't be applied in immediate mode\ndiff:\n…" (Talos' code is InvalidArgument, not
//     FailedPrecondition); NO_REBOOT persists and applies, TRY applies without persisting and
//     reverts after try_mode_timeout (Talos' constants.ConfigTryTimeout, 1 m, by default);
//   - AUTO: NO_REBOOT when CanApplyImmediate passes, else REBOOT with the reason appended to
//     mode_details; the response's mode is the one used;
//   - STAGED: persisted, applied at the next boot; REBOOT: persisted, then the machine reboots;
//   - dry_run: "Dry run summary:\n<details> (skipped in dry-run).\nConfig diff:\n\n<diff>", nothing changes.
func (n *node) ApplyConfiguration(ctx context.Context, in *machine.ApplyConfigurationRequest) (*machine.ApplyConfigurationResponse, error) {
	rec := callRecord{Method: "ApplyConfiguration", Mode: in.GetMode().String(), DryRun: in.GetDryRun()}
	resp, result, err := n.applyConfiguration(ctx, in)
	rec.Result = result
	n.record(rec, err)
	return resp, err
}

func (n *node) applyConfiguration(ctx context.Context, in *machine.ApplyConfigurationRequest) (*machine.ApplyConfigurationResponse, string, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, "", err
	}
	newCfg, err := parseConfig(in.GetData())
	if err != nil {
		return nil, "", status.Error(codes.InvalidArgument, err.Error())
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.busy {
		return nil, "", status.Error(codes.Unavailable, "the node is rebooting")
	}
	if in.GetMode() != machine.ApplyConfigurationRequest_TRY && n.tryTimer != nil {
		n.tryTimer.Stop() // CancelConfigRollbackTimeout
		n.tryTimer = nil
	}
	mode := in.GetMode()
	modeDetails, modeErr := "Applied configuration with a reboot", ""
	immediate := canApplyImmediate(n.cfg.Raw, newCfg.Raw)
	switch mode {
	case machine.ApplyConfigurationRequest_TRY, machine.ApplyConfigurationRequest_NO_REBOOT:
		if immediate != nil {
			return nil, "", status.Error(codes.InvalidArgument, immediate.Error())
		}
		modeDetails = "Applied configuration without a reboot"
	case machine.ApplyConfigurationRequest_STAGED:
		modeDetails = "Staged configuration to be applied after the next reboot"
	case machine.ApplyConfigurationRequest_AUTO:
		if immediate != nil {
			mode = machine.ApplyConfigurationRequest_REBOOT
			modeErr = ": " + immediate.Error()
		} else {
			mode = machine.ApplyConfigurationRequest_NO_REBOOT
			modeDetails = "Applied configuration without a reboot"
		}
	case machine.ApplyConfigurationRequest_REBOOT:
	default:
		return nil, "", fmt.Errorf("incorrect mode '%s' specified for the apply config call", mode.String())
	}
	if in.GetDryRun() {
		diff := configDiff(n.cfg.Raw, newCfg.Raw)
		if diff == "" {
			diff = "No changes."
		}
		return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{
			Mode:        mode,
			ModeDetails: fmt.Sprintf("Dry run summary:\n%s (skipped in dry-run).\nConfig diff:\n\n%s", modeDetails, diff),
		}}}, "dry-run", nil
	}
	result := ""
	switch mode {
	case machine.ApplyConfigurationRequest_TRY:
		timeout := time.Minute
		if in.GetTryModeTimeout() != nil {
			timeout = in.GetTryModeTimeout().AsDuration()
		}
		modeDetails += fmt.Sprintf("\nThe config is applied in 'try' mode and will be automatically reverted back in %s", timeout.String())
		n.cfg = newCfg
		n.tryTimer = time.AfterFunc(timeout, n.rollbackTry)
		result = "try"
	case machine.ApplyConfigurationRequest_NO_REBOOT:
		next := *n.st
		next.Config = newCfg.Raw
		if err := n.store.Save(&next); err != nil {
			return nil, "", err
		}
		*n.st, n.cfg = next, newCfg
		result = "applied"
	case machine.ApplyConfigurationRequest_STAGED:
		next := *n.st
		next.Staged = newCfg.Raw
		if err := n.store.Save(&next); err != nil {
			return nil, "", err
		}
		*n.st = next
		result = "staged"
	case machine.ApplyConfigurationRequest_REBOOT:
		next := *n.st
		next.Config, next.Staged = newCfg.Raw, nil
		if err := n.store.Save(&next); err != nil {
			return nil, "", err
		}
		*n.st = next
		n.busy = true
		n.emit(lifecycleEvent{kind: "reboot", reason: "apply-config"})
		result = "reboot"
	}
	return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{
		Mode: mode, ModeDetails: modeDetails + modeErr,
	}}}, result, nil
}

// rollbackTry is Talos' RollbackToConfigAfter: the persisted config becomes active again.
func (n *node) rollbackTry() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if cfg, err := parseConfig(n.st.Config); err == nil {
		n.cfg, n.tryTimer = cfg, nil
		mark("config-rollback", "reason", "try-timeout", "sha256", cfg.SHA256)
	}
}

// Upgrade follows v1alpha1_server.go Upgrade at v1.12.0: the answer is UpgradeResponse with ack
// "Upgrade request received" and an actor id; the upgrade itself (here: recording the image's
// tag as the next boot's version) and the reboot happen after the answer. stage=true reboots as
// well (Talos installs a staged upgrade during that reboot). The installer image cannot be pulled
// here: an empty image fails like Talos' validation ("error validating installer image", code
// Unknown); the new version is the image's tag, or v1.12.0-trellis-standin when the tag is not a
// version. Etcd checks of control planes (force/preserve) do not apply: there is no etcd.
func (n *node) Upgrade(ctx context.Context, in *machine.UpgradeRequest) (*machine.UpgradeResponse, error) {
	rec := callRecord{Method: "Upgrade", Image: in.GetImage(), Stage: in.GetStage(), Force: in.GetForce(), Preserve: in.GetPreserve()}
	resp, err := n.upgrade(ctx, in)
	rec.Result = "accepted"
	n.record(rec, err)
	return resp, err
}

func (n *node) upgrade(ctx context.Context, in *machine.UpgradeRequest) (*machine.UpgradeResponse, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	image := strings.TrimSpace(in.GetImage())
	if image == "" || strings.ContainsAny(image, " \t") {
		return nil, fmt.Errorf("error validating installer image %q: invalid reference format", in.GetImage())
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.busy {
		return nil, status.Error(codes.Unavailable, "the node is rebooting")
	}
	tag := versionTag(image)
	if tag == "" {
		tag = standinTag
	}
	next := *n.st
	next.PendingVersion = tag
	if err := n.store.Save(&next); err != nil {
		return nil, err
	}
	*n.st = next
	n.busy = true
	n.emit(lifecycleEvent{kind: "reboot", reason: "upgrade"})
	return &machine.UpgradeResponse{Messages: []*machine.Upgrade{{Ack: "Upgrade request received", ActorId: actorID()}}}, nil
}

// systemVolumes are the labels Reset's system_partitions_to_wipe accepts here (Talos looks them
// up as VolumeStatus resources and fails with "failed to get volume status with label").
var systemVolumes = map[string]bool{"STATE": true, "EPHEMERAL": true, "META": true, "BOOT": true, "EFI": true, "IMAGECACHE": true}

// Reset follows v1alpha1_server.go Reset at v1.12.0: input checks as Talos (plain errors, code
// Unknown), then ResetResponse with an actor id; the wipe and the reboot (reboot=true) or power
// off (reboot=false, Talos halts) follow the answer. Without system_partitions_to_wipe (mode ALL
// or SYSTEM_DISK) the whole install goes, so the disk no longer boots and the machine falls
// through to PXE; wiping STATE removes the config only (Talos then boots into maintenance mode,
// the stand-in idles); mode USER_DISKS wipes nothing the stand-in has. graceful (leaving etcd)
// is recorded but has nothing to do.
func (n *node) Reset(ctx context.Context, in *machine.ResetRequest) (*machine.ResetResponse, error) {
	graceful, reboot := in.GetGraceful(), in.GetReboot()
	rec := callRecord{Method: "Reset", Mode: in.GetMode().String(), Graceful: &graceful, Reboot: &reboot}
	resp, err := n.reset(ctx, in)
	rec.Result = "accepted"
	n.record(rec, err)
	return resp, err
}

func (n *node) reset(ctx context.Context, in *machine.ResetRequest) (*machine.ResetResponse, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if len(in.GetUserDisksToWipe()) > 0 {
		if in.GetMode() == machine.ResetRequest_SYSTEM_DISK {
			return nil, errors.New("reset failed: invalid input, wipe mode SYSTEM_DISK doesn't support UserDisksToWipe parameter")
		}
		return nil, fmt.Errorf("reset user disk failed: device %s wasn't found", in.GetUserDisksToWipe()[0])
	}
	wipe, full := in.GetMode() != machine.ResetRequest_USER_DISKS, true
	if parts := in.GetSystemPartitionsToWipe(); len(parts) > 0 {
		if in.GetMode() == machine.ResetRequest_USER_DISKS {
			return nil, errors.New("reset failed: invalid input, wipe mode USER_DISKS doesn't support SystemPartitionsToWipe parameter")
		}
		wipe, full = false, false
		for _, p := range parts {
			if !systemVolumes[p.GetLabel()] {
				return nil, fmt.Errorf("failed to get volume status with label %q: resource VolumeStatuses.block.talos.dev(runtime/%s@undefined) doesn't exist", p.GetLabel(), p.GetLabel())
			}
			if p.GetWipe() && p.GetLabel() == "STATE" {
				wipe = true
			}
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.busy {
		return nil, status.Error(codes.Unavailable, "the node is rebooting")
	}
	n.busy = true
	kind := "poweroff"
	if in.GetReboot() {
		kind = "reboot"
	}
	n.emit(lifecycleEvent{kind: kind, reason: "reset", wipe: wipe, full: full})
	return &machine.ResetResponse{Messages: []*machine.Reset{{ActorId: actorID()}}}, nil
}

// tlsConfig is apid's server side as clients see it; client CAs follow the active config, so a
// machine.ca change applied without a reboot is honoured at once.
func (n *node) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			n.mu.Lock()
			defer n.mu.Unlock()
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(n.cfg.CACrt)
			return &tls.Config{
				Certificates: []tls.Certificate{n.cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    pool,
				MinVersion:   tls.VersionTLS12,
				NextProtos:   []string{"h2"},
			}, nil
		},
	}
}

// immediatePaths are the v1alpha1 paths CanApplyImmediate lets change without a reboot:
// internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_runtime.go (v1.12.0), in its order; the
// machine.features ones only when both configs have machine.features, as there.
var immediatePaths = [][]string{
	{"debug"}, {"cluster"},
	{"machine", "ca"}, {"machine", "acceptedCAs"}, {"machine", "time"}, {"machine", "certSANs"},
	{"machine", "install"}, {"machine", "network"}, {"machine", "sysfs"}, {"machine", "sysctls"},
	{"machine", "logging"}, {"machine", "controlPlane"}, {"machine", "kubelet"}, {"machine", "kernel"},
	{"machine", "registries"}, {"machine", "pods"}, {"machine", "seccompProfiles"},
	{"machine", "nodeAnnotations"}, {"machine", "nodeLabels"}, {"machine", "nodeTaints"},
	{"machine", "features", "kubernetesTalosAPIAccess"}, {"machine", "features", "kubePrism"},
	{"machine", "features", "hostDNS"}, {"machine", "features", "imageCache"},
	{"machine", "features", "nodeAddressSortAlgorithm"},
}

// v1alpha1Doc is the config's v1alpha1 document as a generic map (the one without kind).
func v1alpha1Doc(raw []byte) map[string]any {
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			return nil
		}
		if _, ok := doc["kind"]; !ok && doc["machine"] != nil {
			return doc
		}
	}
}

func deletePath(doc map[string]any, path []string) {
	for _, k := range path[:len(path)-1] {
		next, ok := doc[k].(map[string]any)
		if !ok {
			return
		}
		doc = next
	}
	delete(doc, path[len(path)-1])
}

// canApplyImmediate is Talos' CanApplyImmediate: only the v1alpha1 document is compared (other
// documents, e.g. HostnameConfig, always apply immediately), after removing immediatePaths.
func canApplyImmediate(current, next []byte) error {
	cur, nxt := v1alpha1Doc(current), v1alpha1Doc(next)
	if cur == nil {
		return errors.New("current config is not v1alpha1")
	}
	if nxt == nil {
		return errors.New("new config is not v1alpha1")
	}
	_, curF := dig(cur, "machine", "features").(map[string]any)
	_, nxtF := dig(nxt, "machine", "features").(map[string]any)
	for _, p := range immediatePaths {
		if len(p) == 3 && !(curF && nxtF) {
			continue
		}
		// Talos keeps machine.* fields only when both configs have a machine section.
		if p[0] == "machine" && (cur["machine"] == nil || nxt["machine"] == nil) {
			continue
		}
		deletePath(cur, p)
		deletePath(nxt, p)
	}
	if reflect.DeepEqual(cur, nxt) {
		return nil
	}
	return fmt.Errorf("this config change can't be applied in immediate mode\ndiff:\n%s", diffPaths("", cur, nxt))
}

func dig(m map[string]any, path ...string) any {
	var v any = m
	for _, k := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// diffPaths lists the changed paths, one "  path: changed|added|removed" line each (Talos prints
// a unified YAML diff here; the paths are what matters to a reader of the stand-in).
func diffPaths(prefix string, a, b any) string {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if !aok || !bok {
		if reflect.DeepEqual(a, b) {
			return ""
		}
		switch {
		case a == nil:
			return "  " + prefix + ": added\n"
		case b == nil:
			return "  " + prefix + ": removed\n"
		}
		return "  " + prefix + ": changed\n"
	}
	keys := map[string]bool{}
	for k := range am {
		keys[k] = true
	}
	for k := range bm {
		keys[k] = true
	}
	var out strings.Builder
	for _, k := range sortedKeys(keys) {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		out.WriteString(diffPaths(p, am[k], bm[k]))
	}
	return out.String()
}

// configDiff is the dry run's "Config diff": changed paths of every document.
func configDiff(current, next []byte) string {
	docs := func(raw []byte) map[string]any {
		out := map[string]any{}
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		for i := 0; ; i++ {
			var doc map[string]any
			if err := dec.Decode(&doc); err != nil {
				return out
			}
			name := "v1alpha1"
			if k, ok := doc["kind"].(string); ok {
				name = k
				if nm, ok := doc["name"].(string); ok {
					name += "/" + nm
				}
			}
			out[name] = doc
		}
	}
	return diffPaths("", docs(current), docs(next))
}

// dirStore keeps the state of `trellis-guest api --state-dir DIR`: config.yaml, staged.yaml,
// version and pending-version (absent when empty); calls.jsonl is written by the node.
type dirStore struct{ dir string }

func (d dirStore) path(name string) string { return filepath.Join(d.dir, name) }

func (d dirStore) Load() (*nodeState, error) {
	st := &nodeState{}
	var err error
	if st.Config, err = os.ReadFile(d.path("config.yaml")); err != nil {
		return nil, err
	}
	st.Staged, _ = os.ReadFile(d.path("staged.yaml"))
	v, _ := os.ReadFile(d.path("version"))
	p, _ := os.ReadFile(d.path("pending-version"))
	st.Version, st.PendingVersion = strings.TrimSpace(string(v)), strings.TrimSpace(string(p))
	return st, nil
}

func writeOrRemove(path string, b []byte) error {
	if len(b) == 0 {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (d dirStore) Save(st *nodeState) error {
	line := func(s string) []byte {
		if s == "" {
			return nil
		}
		return []byte(s + "\n")
	}
	for name, b := range map[string][]byte{
		"config.yaml": st.Config, "staged.yaml": st.Staged, "version": line(st.Version), "pending-version": line(st.PendingVersion),
	} {
		if err := writeOrRemove(d.path(name), b); err != nil {
			return err
		}
	}
	return nil
}

func (d dirStore) Wipe(full bool) error {
	names := []string{"config.yaml", "staged.yaml"}
	if full {
		names = append(names, "version", "pending-version")
	}
	for _, name := range names {
		if err := writeOrRemove(d.path(name), nil); err != nil {
			return err
		}
	}
	return nil
}

// faultsFrom collects trellis-guest.fault=a,b values from OEM strings.
func faultsFrom(oem []string) map[string]bool {
	out := map[string]bool{}
	for _, s := range oem {
		if v, ok := strings.CutPrefix(s, "trellis-guest.fault="); ok {
			for _, f := range strings.Split(v, ",") {
				if f = strings.TrimSpace(f); f != "" {
					out[f] = true
				}
			}
		}
	}
	return out
}

// smbiosOEMStrings reads the strings of every SMBIOS type 11 (OEM Strings) structure from a raw
// table as the kernel exposes it at /sys/firmware/dmi/tables/DMI: structures of a 4-byte header
// (type, length, handle), `length` bytes of formatted area, then NUL-terminated strings ending
// with an empty one (a structure without strings ends in two NULs); type 127 ends the table.
func smbiosOEMStrings(table []byte) []string {
	var out []string
	for off := 0; off+4 <= len(table); {
		typ, length := table[off], int(table[off+1])
		if length < 4 || off+length > len(table) {
			break
		}
		i := off + length
		var strs []string
		for i < len(table) {
			end := i
			for end < len(table) && table[end] != 0 {
				end++
			}
			if end == i { // empty string: end of the set
				i = end + 1
				break
			}
			strs = append(strs, string(table[i:end]))
			i = end + 1
		}
		if len(strs) == 0 && i < len(table) && table[i] == 0 && i == off+length+1 {
			i++ // no strings: the second NUL of the pair
		}
		if typ == 11 {
			out = append(out, strs...)
		}
		if typ == 127 {
			break
		}
		off = i
	}
	return out
}

func vmFaults() map[string]bool {
	table, err := os.ReadFile("/sys/firmware/dmi/tables/DMI")
	if err != nil {
		return map[string]bool{}
	}
	f := faultsFrom(smbiosOEMStrings(table))
	if len(f) > 0 {
		mark("faults", "faults", strings.Join(sortedKeys(f), ","), "source", "smbios-oem-strings")
	}
	return f
}

func faultList(f map[string]bool) string {
	keys := sortedKeys(f)
	sort.Strings(keys)
	return strings.Join(keys, ",")
}
