package main

import (
	"fmt"
	"os"

	"github.com/elastic/beats/v7/libbeat/cmd"
	"github.com/elastic/beats/v7/libbeat/cmd/instance"
	"github.com/elastic/beats/v7/libbeat/idxmgmt"
	"github.com/elastic/beats/v7/libbeat/outputs"
	"github.com/elastic/elastic-agent-libs/testing"
	"github.com/spf13/cobra"
)

// strictTestOutput makes `connbeat test output` exit 1 when any check
// reports an error. libbeat's command exits 1 only when a check stops the
// test; the Kafka output reports "dial up... ERROR connection refused" and
// goes on, so libbeat exits 0 for a dead broker and scripts that trust the
// exit code start the agent against it.
func strictTestOutput(root *cmd.BeatsRootCmd, settings instance.Settings) {
	for _, c := range root.TestCmd.Commands() {
		if c.Name() == "output" {
			c.Run = func(*cobra.Command, []string) { os.Exit(testOutput(settings)) }
		}
	}
}

// testOutput loads the configured output and runs the test of each of its
// clients; it returns the process exit code.
func testOutput(settings instance.Settings) int {
	b, err := instance.NewInitializedBeat(settings)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error initializing beat: %s\n", err)
		return 1
	}
	im, _ := idxmgmt.DefaultSupport(b.Info, nil)
	name := b.Config.Output.Name()
	group, err := outputs.Load(im, b.Info, nil, name, b.Config.Output.Config(), b.Info.Paths)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error initializing output: %s\n", err)
		return 1
	}
	failed := false
	for _, client := range group.Clients {
		t, ok := client.(testing.Testable)
		if !ok {
			fmt.Printf("%s output doesn't support testing\n", name)
			return 1
		}
		t.Test(&failureDriver{Driver: testing.NewConsoleDriver(os.Stdout), failed: &failed})
	}
	if failed {
		return 1
	}
	return 0
}

// failureDriver notes whether any check, at any depth, reported an error.
type failureDriver struct {
	testing.Driver
	failed *bool
}

func (d *failureDriver) Run(name string, f func(testing.Driver)) {
	d.Driver.Run(name, func(sub testing.Driver) { f(&failureDriver{Driver: sub, failed: d.failed}) })
}

func (d *failureDriver) Error(field string, err error) {
	if err != nil {
		*d.failed = true
	}
	d.Driver.Error(field, err)
}

func (d *failureDriver) Fatal(field string, err error) {
	if err != nil {
		*d.failed = true
	}
	d.Driver.Fatal(field, err)
}
