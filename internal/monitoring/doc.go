// Package monitoring has no code: its tests keep docs/monitoring (the
// Grafana dashboard and the Prometheus alert rules) true to the services.
// Every metric and label a rule or a panel names must be one logic, comet,
// job or the admin registry exports, every service metric must have a
// panel, and every alert docs/operations.md asks for must have a rule.
// `make monitoring-check` also runs promtool on the rules.
package monitoring
