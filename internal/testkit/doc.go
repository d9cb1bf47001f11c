// Package testkit and the packages below it are test support only (fixtures,
// child processes, servers for tests): production code must not import them.
package testkit
