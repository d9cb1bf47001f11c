package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/elastic/beats/v7/libbeat/cfgfile"
	"github.com/elastic/beats/v7/libbeat/cmd"

	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/model"
	"github.com/connbeat/connbeat/pipeline"
	"github.com/connbeat/connbeat/servicemap"
	"github.com/connbeat/connbeat/top"
)

// addCommands adds connbeat's own subcommands to libbeat's root command.
func addCommands(root *cmd.BeatsRootCmd) {
	root.AddCommand(top.Command(openTop(root)), servicemap.Command())
}

// openTop builds the agent's pipeline for `connbeat top` from the
// `connbeat:` section of the configuration the agent would read; without
// a configuration file (none at the default path, no -c) the defaults.
func openTop(root *cmd.BeatsRootCmd) top.Open {
	return func(socketSource string, tcpInfo bool) (top.Source, time.Duration, error) {
		cfg, err := agentConfig(root.PersistentFlags().Changed("c"))
		if err != nil {
			return nil, 0, err
		}
		if socketSource != "" {
			cfg.SocketSource = socketSource
		}
		cfg.TCPInfo = cfg.TCPInfo || tcpInfo
		if err := cfg.Validate(); err != nil {
			return nil, 0, err
		}
		p, err := pipeline.New(pipeline.Options{Config: cfg})
		if err != nil {
			return nil, 0, err
		}
		return topSource{p}, cfg.PollInterval, nil
	}
}

func agentConfig(explicit bool) (config.Config, error) {
	if err := cfgfile.HandleFlags(); err != nil {
		return config.Config{}, err
	}
	raw, err := cfgfile.Load("", nil)
	switch {
	case err != nil && !explicit && errors.Is(err, fs.ErrNotExist):
		return config.Default(), nil
	case err != nil:
		return config.Config{}, fmt.Errorf("reading the configuration: %w", err)
	}
	if !raw.HasField("connbeat") {
		return config.Default(), nil
	}
	section, err := raw.Child("connbeat", -1)
	if err != nil {
		return config.Config{}, err
	}
	return config.Load(section)
}

// topSource is the pipeline as top reads it.
type topSource struct{ *pipeline.Pipeline }

func (s topSource) Records(ctx context.Context) ([]model.Record, error) {
	records, _, err := s.Pipeline.Records(ctx)
	return records, err
}

func (s topSource) Name() string { return s.SourceName() }
