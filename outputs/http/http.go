package http

import (
	"context"
	"fmt"
	nethttp "net/http"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/beats/v7/libbeat/outputs"
	"github.com/elastic/beats/v7/libbeat/outputs/codec/json"
	"github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/paths"
	"github.com/elastic/elastic-agent-libs/testing"

	"github.com/connbeat/connbeat/internal/confkeys"
)

func init() {
	outputs.RegisterType("http", makeHTTP)
}

// maxRetries -1: libbeat retries a batch until the server accepts it;
// nothing the server did not accept is given up by the output.
const maxRetries = -1

func makeHTTP(_ outputs.IndexManager, info beat.Info, observer outputs.Observer, cfg *config.C, beatPaths *paths.Path) (outputs.Group, error) {
	c, err := loadConfig(cfg)
	if err != nil {
		return outputs.Fail(err)
	}
	log := info.Logger.Named("http")
	clients := make([]outputs.NetworkClient, len(c.Hosts))
	for i, url := range c.Hosts {
		enc := json.New(info.Version, json.Config{EscapeHTML: false})
		cl := newClient(url, &c, observer, enc, info.Beat, log)
		clients[i] = outputs.WithBackoff(cl, c.Backoff.Init, c.Backoff.Max)
	}
	return outputs.SuccessNet(c.Queue, c.LoadBalance, c.BatchSize, maxRetries, nil, info.Logger, beatPaths, clients)
}

// loadConfig unpacks and validates the output's section, reporting
// unknown keys and bad values at once.
func loadConfig(cfg *config.C) (httpConfig, error) {
	c := defaultConfig()
	err := confkeys.Unpack(cfg, "output.http", &c, "enabled")
	return c, err
}

// Test implements `connbeat test output`: the endpoint must answer an
// empty batch (an empty JSON array or an empty NDJSON body) with 2xx.
func (c *client) Test(d testing.Driver) {
	d.Run("http: "+c.url, func(d testing.Driver) {
		if err := c.Connect(context.Background()); err != nil {
			d.Fatal("config", err)
			return
		}
		defer c.Close()
		c.body.reset()
		body, err := c.body.finish()
		d.Fatal("encode", err)
		hc, ctx := c.state()
		status, _, snippet, err := c.send(ctx, hc, body)
		d.Fatal("talk to server", err)
		if classify(status) != accepted {
			d.Fatal("response", fmt.Errorf("%w: %d %s: %q", errRejected, status, nethttp.StatusText(status), snippet))
			return
		}
		d.Info("response", fmt.Sprintf("%d %s", status, nethttp.StatusText(status)))
	})
}
