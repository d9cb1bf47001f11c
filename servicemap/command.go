package servicemap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Formats lists what --format accepts.
var Formats = []string{"dot", "html"}

// Command returns `connbeat map`.
func Command() *cobra.Command {
	var format, brokers, topic string
	cmd := &cobra.Command{
		Use:   "map [--format dot|html] [FILE|-]...",
		Short: "Draw a service map from connbeat events",
		Long: `map reads connbeat events, classic or ECS, one a line (the file output's
files, the console output's lines; - or no FILE reads stdin) or from a Kafka
topic (--kafka BROKER[,BROKER] --topic T, from its start to its end when map
starts), and writes a service map to stdout: processes and containers as
nodes grouped by host, edges weighted by connections (and bytes where the
events carry them). An outbound event on one host and the inbound event on
another for the same connections are one edge. --format html writes a page
with the map as SVG (rendered with Graphviz's dot where installed, the DOT
source otherwise). Lines that are not connbeat events are skipped, and
counted on stderr.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, cmd, args, format, brokers, topic)
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "dot", "output format: dot or html")
	f.StringVar(&brokers, "kafka", "", "read a Kafka topic from these brokers (host:port, comma-separated)")
	f.StringVar(&topic, "topic", "", "the Kafka topic to read (with --kafka)")
	return cmd
}

func run(ctx context.Context, cmd *cobra.Command, files []string, format, brokers, topic string) error {
	if format != "dot" && format != "html" {
		return fmt.Errorf("--format must be one of %s, got %q", strings.Join(Formats, ", "), format)
	}
	m := New(DefaultLimits)
	switch {
	case brokers != "" && len(files) > 0:
		return errors.New("read either files or --kafka, not both")
	case brokers != "" && topic == "":
		return errors.New("--kafka needs --topic")
	case brokers == "" && topic != "":
		return errors.New("--topic needs --kafka")
	case brokers != "":
		if err := m.ReadKafka(ctx, strings.Split(brokers, ","), topic); err != nil {
			return err
		}
	default:
		if len(files) == 0 {
			files = []string{"-"}
		}
		for _, name := range files {
			if err := readFile(m, name, cmd.InOrStdin()); err != nil {
				return err
			}
		}
	}
	summary := m.Summary()
	fmt.Fprintln(cmd.ErrOrStderr(), "connbeat map: "+summary)

	g := m.Graph()
	title := fmt.Sprintf("connbeat service map: %s, %s, %s", plural(g.Hosts(), "host"),
		plural(len(g.Nodes), "node"), plural(len(g.Edges), "edge"))
	if format == "html" {
		return WriteHTML(ctx, cmd.OutOrStdout(), g, title, summary)
	}
	return WriteDOT(cmd.OutOrStdout(), g, title)
}

func readFile(m *Map, name string, stdin io.Reader) error {
	if name == "-" {
		return m.ReadLines(stdin)
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := m.ReadLines(f); err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	return nil
}
