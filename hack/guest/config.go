package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// The stored config lives in the disk's last 4 MiB: far from the image written at the start,
// and found again without a partition table or file system.
const (
	storeSize   = 4 << 20
	storeMagic  = "TRELLIS-STANDIN-CONFIG v1"
	maxConfig   = storeSize - 4096
	fetchTimout = 30 * time.Second
)

var errNoConfig = errors.New("no stored config")

// MachineConfig is what the stand-in needs from a Talos machine config.
type MachineConfig struct {
	Raw      []byte
	SHA256   string
	Type     string
	CACrt    []byte // PEM
	CAKey    []byte // PEM, empty on workers
	Hostname string
	// Token is machine.token (trustd's token); Endpoint is cluster.controlPlane.endpoint.
	Token, Endpoint string
	// TalosVersion is the tag of machine.install.image when it is a version (v1.12.0): the Talos
	// the installer would have put on the disk. Empty for other tags and digests.
	TalosVersion string
	// Static addresses ("10.20.0.10/24") and default gateways of interfaces selected by this MAC
	// or interface name, as Talos would configure them.
	Interfaces []StaticInterface
	// Hosts is machine.network.extraHostEntries, Talos' /etc/hosts: alias -> IP.
	Hosts map[string]string
}

type StaticInterface struct {
	Name, HardwareAddr string
	Addresses          []string
	Gateways           []string
}

type v1alpha1 struct {
	Machine *struct {
		Type    string `yaml:"type"`
		Token   string `yaml:"token"`
		Install struct {
			Image string `yaml:"image"`
		} `yaml:"install"`
		CA struct {
			Crt string `yaml:"crt"`
			Key string `yaml:"key"`
		} `yaml:"ca"`
		Network struct {
			Hostname   string `yaml:"hostname"`
			Interfaces []struct {
				Interface      string `yaml:"interface"`
				DeviceSelector struct {
					HardwareAddr string `yaml:"hardwareAddr"`
				} `yaml:"deviceSelector"`
				Addresses []string `yaml:"addresses"`
				Routes    []struct {
					Network string `yaml:"network"`
					Gateway string `yaml:"gateway"`
				} `yaml:"routes"`
			} `yaml:"interfaces"`
			ExtraHostEntries []struct {
				IP      string   `yaml:"ip"`
				Aliases []string `yaml:"aliases"`
			} `yaml:"extraHostEntries"`
		} `yaml:"network"`
	} `yaml:"machine"`
	Cluster *struct {
		ControlPlane struct {
			Endpoint string `yaml:"endpoint"`
		} `yaml:"controlPlane"`
	} `yaml:"cluster"`
	Kind     string `yaml:"kind"`
	Hostname string `yaml:"hostname"`
}

// parseConfig accepts a multi-document Talos config whose v1alpha1 document has machine.type and
// a machine.ca.crt holding a base64 PEM certificate.
func parseConfig(raw []byte) (*MachineConfig, error) {
	sum := sha256.Sum256(raw)
	cfg := &MachineConfig{Raw: raw, SHA256: hex.EncodeToString(sum[:])}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	found := false
	for {
		var doc v1alpha1
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("YAML: %w", err)
		}
		if doc.Kind == "HostnameConfig" && doc.Hostname != "" {
			cfg.Hostname = doc.Hostname
		}
		if doc.Machine == nil || doc.Kind != "" {
			continue
		}
		m := doc.Machine
		if m.Type == "" {
			return nil, errors.New("machine.type is empty")
		}
		if m.CA.Crt == "" {
			return nil, errors.New("machine.ca.crt is empty")
		}
		crt, err := base64.StdEncoding.DecodeString(m.CA.Crt)
		if err != nil {
			return nil, fmt.Errorf("machine.ca.crt: %w", err)
		}
		if _, err := parseCertPEM(crt); err != nil {
			return nil, fmt.Errorf("machine.ca.crt: %w", err)
		}
		cfg.Type, cfg.CACrt, cfg.TalosVersion, cfg.Token = m.Type, crt, versionTag(m.Install.Image), m.Token
		if doc.Cluster != nil {
			cfg.Endpoint = doc.Cluster.ControlPlane.Endpoint
		}
		if m.CA.Key != "" {
			if cfg.CAKey, err = base64.StdEncoding.DecodeString(m.CA.Key); err != nil {
				return nil, fmt.Errorf("machine.ca.key: %w", err)
			}
		}
		if m.Network.Hostname != "" {
			cfg.Hostname = m.Network.Hostname
		}
		for _, i := range m.Network.Interfaces {
			si := StaticInterface{Name: i.Interface, HardwareAddr: strings.ToLower(i.DeviceSelector.HardwareAddr), Addresses: i.Addresses}
			for _, r := range i.Routes {
				if r.Gateway != "" && (r.Network == "" || r.Network == "0.0.0.0/0") {
					si.Gateways = append(si.Gateways, r.Gateway)
				}
			}
			cfg.Interfaces = append(cfg.Interfaces, si)
		}
		for _, e := range m.Network.ExtraHostEntries {
			for _, alias := range e.Aliases {
				if cfg.Hosts == nil {
					cfg.Hosts = map[string]string{}
				}
				cfg.Hosts[strings.ToLower(alias)] = e.IP
			}
		}
		found = true
	}
	if !found {
		return nil, errors.New("no v1alpha1 document with a machine section")
	}
	return cfg, nil
}

var versionPattern = regexp.MustCompile(`^v\d+\.\d+\.\d+([-+.][0-9A-Za-z.+-]*)?$`)

// versionTag is the image reference's tag when it names a Talos version: installers are tagged
// with the release they install (ghcr.io/siderolabs/installer:v1.12.0, factory images alike).
func versionTag(image string) string {
	image, _, _ = strings.Cut(image, "@")
	slash := strings.LastIndex(image, "/")
	colon := strings.LastIndex(image, ":")
	if colon <= slash {
		return ""
	}
	if tag := image[colon+1:]; versionPattern.MatchString(tag) {
		return tag
	}
	return ""
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("not PEM")
	}
	return x509.ParseCertificate(block.Bytes)
}

// expandURL replaces the variables Talos expands in talos.config (iPXE has usually expanded
// ${uuid} already when the URL came from the boot service's script).
func expandURL(raw string, l *Lease) string {
	read := func(p string) string {
		b, _ := os.ReadFile(p)
		return strings.TrimSpace(string(b))
	}
	hostname, _ := os.Hostname()
	vars := map[string]string{
		"${uuid}":     read("/sys/class/dmi/id/product_uuid"),
		"${serial}":   read("/sys/class/dmi/id/product_serial"),
		"${mac}":      l.MAC,
		"${hostname}": hostname,
	}
	for k, v := range vars {
		raw = strings.ReplaceAll(raw, k, url.QueryEscape(v))
	}
	return raw
}

// fetchConfig behaves as Talos' config download: every failure, including a 403 from the boot
// service while the device is not approved, is retried after 5 s, forever.
func fetchConfig(u string) *MachineConfig {
	client := &http.Client{Timeout: fetchTimout}
	for attempt := 1; ; attempt++ {
		cfg, status, err := fetchOnce(client, u)
		kv := []string{"attempt", strconv.Itoa(attempt), "url", u, "status", status}
		if err != nil && status != "200" {
			kv = append(kv, "error", err.Error())
		}
		mark("config-fetch", kv...)
		if err == nil {
			mark("config", "source", "url", "bytes", strconv.Itoa(len(cfg.Raw)), "sha256", cfg.SHA256, "type", cfg.Type)
			return cfg
		}
		if status == "200" {
			mark("config-invalid", "error", err.Error())
		}
		time.Sleep(retryInterval)
	}
}

func fetchOnce(client *http.Client, u string) (*MachineConfig, string, error) {
	resp, err := client.Get(u)
	if err != nil {
		return nil, "error", err
	}
	defer resp.Body.Close()
	status := strconv.Itoa(resp.StatusCode)
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxConfig+1))
	if err != nil {
		return nil, status, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, status, fmt.Errorf("HTTP %s", resp.Status)
	}
	if len(body) > maxConfig {
		return nil, status, fmt.Errorf("config larger than %d bytes", maxConfig)
	}
	cfg, err := parseConfig(body)
	return cfg, status, err
}

// install writes the image raw to the disk, stores the config behind it and reboots; failures
// are retried every 5 s (the boot service side is not affected: the config was already served).
func install(imageURL string, cfg *MachineConfig) {
	if imageURL == "" {
		fatal(errors.New("kernel argument trellis.standin.image=<URL> is missing: nothing to install"))
	}
	for {
		n, sum, err := writeImage(imageURL, disk)
		if err == nil {
			mark("install", "image", imageURL, "bytes", strconv.FormatInt(n, 10), "sha256", sum, "disk", disk)
			var off int64
			if off, err = storeConfig(disk, cfg.Raw); err == nil {
				mark("stored", "offset", strconv.FormatInt(off, 10), "bytes", strconv.Itoa(len(cfg.Raw)))
				break
			}
		}
		mark("install-error", "error", err.Error())
		time.Sleep(retryInterval)
	}
	syscall.Sync()
	mark("reboot", "reason", "installed")
	time.Sleep(200 * time.Millisecond) // let the serial line drain
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
	idle()
}

func diskSize(f *os.File) (int64, error) {
	return f.Seek(0, io.SeekEnd)
}

func writeImage(imageURL, dev string) (int64, string, error) {
	resp, err := http.Get(imageURL)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("image %s: HTTP %s", imageURL, resp.Status)
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	size, err := diskSize(f)
	if err != nil {
		return 0, "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, "", err
	}
	if resp.ContentLength > 0 && resp.ContentLength > size-storeSize {
		return 0, "", fmt.Errorf("image of %d bytes does not fit %s (%d bytes, last 4 MiB reserved)", resp.ContentLength, dev, size)
	}
	h := sha256.New()
	lim := &io.LimitedReader{R: resp.Body, N: size - storeSize + 1}
	n, err := io.CopyBuffer(io.MultiWriter(f, h), lim, make([]byte, 1<<20))
	if err != nil {
		return n, "", err
	}
	if n > size-storeSize {
		return n, "", fmt.Errorf("image does not fit %s (%d bytes, last 4 MiB reserved)", dev, size)
	}
	if err := f.Sync(); err != nil {
		return n, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// The region holds either a config alone (v1, written by install) or the node's whole state as
// JSON (v2, written once the API has run: config, staged config, version, pending upgrade).
const stateMagic = "TRELLIS-STANDIN-STATE v2"

func encodeStore(raw []byte) []byte { return encodeRegion(storeMagic, raw) }

func encodeRegion(magic string, raw []byte) []byte {
	sum := sha256.Sum256(raw)
	hdr := fmt.Sprintf("%s\nlength %d\nsha256 %s\n\n", magic, len(raw), hex.EncodeToString(sum[:]))
	return append([]byte(hdr), raw...)
}

// decodeStore returns the config of a v1 or v2 region.
func decodeStore(region []byte) ([]byte, error) {
	st, err := decodeState(region)
	if err != nil {
		return nil, err
	}
	return st.Config, nil
}

func decodeState(region []byte) (*nodeState, error) {
	r := bufio.NewReader(bytes.NewReader(region))
	line := func() string { s, _ := r.ReadString('\n'); return strings.TrimSuffix(s, "\n") }
	magic := line()
	if magic != storeMagic && magic != stateMagic {
		return nil, errNoConfig
	}
	n, err := strconv.Atoi(strings.TrimPrefix(line(), "length "))
	if err != nil || n < 0 || n > maxConfig {
		return nil, errors.New("stored config: bad length")
	}
	want := strings.TrimPrefix(line(), "sha256 ")
	if line() != "" {
		return nil, errors.New("stored config: bad header")
	}
	raw := make([]byte, n)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("stored config: %w", err)
	}
	sum := sha256.Sum256(raw)
	if hex.EncodeToString(sum[:]) != want {
		return nil, errors.New("stored config: sha256 mismatch")
	}
	if magic == storeMagic {
		return &nodeState{Config: raw}, nil
	}
	st := &nodeState{}
	if err := json.Unmarshal(raw, st); err != nil {
		return nil, fmt.Errorf("stored state: %w", err)
	}
	return st, nil
}

func storeConfig(dev string, raw []byte) (int64, error) {
	return writeRegion(dev, encodeStore(raw))
}

// writeRegion writes the store region (zero-padded, so no older content survives behind it);
// a nil payload clears it.
func writeRegion(dev string, payload []byte) (int64, error) {
	if len(payload) > storeSize {
		return 0, fmt.Errorf("state of %d bytes does not fit the %d bytes reserved", len(payload), storeSize)
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	size, err := diskSize(f)
	if err != nil {
		return 0, err
	}
	if size < 2*storeSize {
		return 0, fmt.Errorf("%s is too small (%d bytes)", dev, size)
	}
	region := make([]byte, storeSize)
	copy(region, payload)
	off := size - storeSize
	if _, err := f.WriteAt(region, off); err != nil {
		return 0, err
	}
	return off, f.Sync()
}

func readStoredState(dev string) (*nodeState, error) {
	f, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := diskSize(f)
	if err != nil {
		return nil, err
	}
	if size < 2*storeSize {
		return nil, errNoConfig
	}
	region := make([]byte, storeSize)
	if _, err := f.ReadAt(region, size-storeSize); err != nil {
		return nil, err
	}
	return decodeState(region)
}

func readStoredConfig(dev string) (*MachineConfig, error) {
	st, err := readStoredState(dev)
	if err != nil {
		return nil, err
	}
	return parseConfig(st.Config)
}

// diskStore is the VM's nodeStore: the state in the disk's last 4 MiB.
type diskStore struct{ dev string }

func (d diskStore) Load() (*nodeState, error) { return readStoredState(d.dev) }

func (d diskStore) Save(st *nodeState) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = writeRegion(d.dev, encodeRegion(stateMagic, raw))
	return err
}

// Wipe clears the state region; full also zeroes the disk's first MiB (boot sector, partition
// tables and the ISO 9660 descriptors of the installed image), so firmware no longer boots it.
func (d diskStore) Wipe(full bool) error {
	if _, err := writeRegion(d.dev, nil); err != nil {
		return err
	}
	if !full {
		return nil
	}
	f, err := os.OpenFile(d.dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, 1<<20), 0); err != nil {
		return err
	}
	return f.Sync()
}
