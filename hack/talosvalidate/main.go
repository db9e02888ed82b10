// Command talos-validate checks Trellis renders with Talos' own machinery module.
//
//	talos-validate validate [--mode metal] [--strict] FILE...   validate machine configs
//	talos-validate secrets FILE...                              load and validate secrets bundles
//	talos-validate patch CONFIG PATCH...                        apply patches the way Talos does
//
// Exit status is 0 when every input passes, 1 when one fails, 2 on usage errors.
// Findings go to stdout as one JSON object per input so callers can parse them.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/validation"
	"github.com/siderolabs/talos/pkg/machinery/role"
)

// runtimeMode mirrors the three modes Talos validates for; only the install requirement differs.
type runtimeMode string

func (m runtimeMode) String() string        { return string(m) }
func (m runtimeMode) RequiresInstall() bool { return m == "metal" }
func (m runtimeMode) InContainer() bool     { return m == "container" }

type finding struct {
	File     string   `json:"file"`
	OK       bool     `json:"ok"`
	Error    string   `json:"error,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

func emit(f finding) {
	out, _ := json.Marshal(f)
	fmt.Println(string(out))
}

func validateConfigs(args []string) int {
	fs := flag.NewFlagSet("validate", flag.ExitOnError)
	mode := fs.String("mode", "metal", "runtime mode: metal, cloud or container")
	strict := fs.Bool("strict", false, "treat warnings as errors")
	_ = fs.Parse(args)

	switch *mode {
	case "metal", "cloud", "container":
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", *mode)
		return 2
	}

	opts := []validation.Option{validation.WithLocal()}
	if *strict {
		opts = append(opts, validation.WithStrict())
	}

	status := 0
	for _, path := range fs.Args() {
		f := finding{File: path}
		cfg, err := configloader.NewFromFile(path)
		if err == nil {
			f.Warnings, err = cfg.Validate(runtimeMode(*mode), opts...)
		}
		if err != nil {
			f.Error = err.Error()
			status = 1
		} else {
			f.OK = true
		}
		emit(f)
	}
	return status
}

func validateSecrets(args []string) int {
	status := 0
	for _, path := range args {
		f := finding{File: path}
		bundle, err := secrets.LoadBundle(path)
		if err == nil {
			err = bundle.Validate()
		}
		if err == nil {
			// Signing a client certificate proves the OS CA key is usable, not just parseable.
			_, err = bundle.GenerateTalosAPIClientCertificate(role.MakeSet(role.Admin))
		}
		if err != nil {
			f.Error = err.Error()
			status = 1
		} else {
			f.OK = true
		}
		emit(f)
	}
	return status
}

func applyPatches(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: talos-validate patch CONFIG PATCH...")
		return 2
	}
	base, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	patchSources := make([]string, 0, len(args)-1)
	for _, p := range args[1:] {
		patchSources = append(patchSources, "@"+p)
	}
	patches, err := configpatcher.LoadPatches(patchSources)
	if err == nil {
		var out configpatcher.Output
		out, err = configpatcher.Apply(configpatcher.WithBytes(base), patches)
		if err == nil {
			var rendered []byte
			cfg, cfgErr := out.Config()
			if cfgErr != nil {
				err = cfgErr
			} else {
				rendered, err = cfg.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
			}
			if err == nil {
				_, err = os.Stdout.Write(rendered)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, errors.New("usage: talos-validate validate|secrets|patch ..."))
		os.Exit(2)
	}
	var status int
	switch os.Args[1] {
	case "validate":
		status = validateConfigs(os.Args[2:])
	case "secrets":
		status = validateSecrets(os.Args[2:])
	case "patch":
		status = applyPatches(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", os.Args[1])
		status = 2
	}
	os.Exit(status)
}
