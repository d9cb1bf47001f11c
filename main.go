// Command connbeat reports every TCP socket on a Linux host, joined to the
// process that owns it, through libbeat's outputs.
package main

import (
	_ "embed"
	"os"
	"strings"

	"github.com/elastic/beats/v7/libbeat/asset"
	"github.com/elastic/beats/v7/libbeat/cmd"
	"github.com/elastic/beats/v7/libbeat/cmd/instance"
	libversion "github.com/elastic/beats/v7/libbeat/version"

	"github.com/connbeat/connbeat/beater"
	"github.com/connbeat/connbeat/internal/syscallfilter"
	_ "github.com/connbeat/connbeat/outputs/amqp"
	_ "github.com/connbeat/connbeat/outputs/http"
	_ "github.com/connbeat/connbeat/outputs/zeromq"
)

var (
	//go:embed VERSION
	version string
	//go:embed fields.yml
	fieldsYML string
)

func main() {
	// The index template and `export template` read the field definitions
	// from libbeat's asset registry, keyed by beat name.
	encoded, err := asset.EncodeData(fieldsYML)
	if err != nil {
		os.Stderr.WriteString("connbeat: encoding fields.yml: " + err.Error() + "\n")
		os.Exit(1)
	}
	_ = asset.SetFields("connbeat", "fields.yml", asset.BeatFieldsPri, func() string { return encoded })

	// The bpf socket source needs bpf(2), which libbeat's seccomp policy
	// does not allow on every architecture (the kernel still asks for
	// CAP_BPF and CAP_PERFMON; without them connbeat uses netlink).
	if err := syscallfilter.AllowBPF(); err != nil {
		os.Stderr.WriteString("connbeat: allowing bpf(2) in the seccomp policy: " + err.Error() + "\n")
		os.Exit(1)
	}
	// Reading other network namespaces enters each one (setns(2), which
	// the kernel allows with CAP_SYS_ADMIN).
	if err := syscallfilter.AllowSetns(); err != nil {
		os.Stderr.WriteString("connbeat: allowing setns(2) in the seccomp policy: " + err.Error() + "\n")
		os.Exit(1)
	}

	settings := instance.Settings{
		Name:    "connbeat",
		Version: strings.TrimSpace(version),
		// Safer defaults for libbeat's outputs (beater/defaults.go).
		ConfigOverrides: beater.OutputDefaults(),
	}
	root := cmd.GenRootCmdWithSettings(beater.New, settings)
	defaultTemplateVersion(root)
	strictTestOutput(root, settings)
	addCommands(root)
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}

// defaultTemplateVersion makes `export template` target the Elasticsearch
// version libbeat is built for. libbeat defaults it to the beat's own
// version, which for connbeat (0.x) is an Elasticsearch without ILM, and the
// export fails.
func defaultTemplateVersion(root *cmd.BeatsRootCmd) {
	for _, c := range root.ExportCmd.Commands() {
		if c.Name() != "template" {
			continue
		}
		if f := c.Flags().Lookup("es.version"); f != nil {
			v := libversion.GetDefaultVersion()
			_ = f.Value.Set(v)
			f.DefValue = v
		}
	}
}
