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

	"github.com/connbeat/connbeat/beater"
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

	settings := instance.Settings{
		Name:    "connbeat",
		Version: strings.TrimSpace(version),
	}
	if err := cmd.GenRootCmdWithSettings(beater.New, settings).Execute(); err != nil {
		os.Exit(1)
	}
}
