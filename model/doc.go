// Package model holds the values that travel through connbeat's stages:
// sockets from the sources, the processes that own them, classified
// records and the reports dedup lets through, and the conntrack input's
// flows. Every stage imports it and it imports none of them, so a stage
// compiles against the model, not against the stage before it.
package model
