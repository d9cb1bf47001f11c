// Package packaging tests connbeat's deb, rpm and tar.gz the way an operator
// uses them: installed with dpkg, run as the connbeat user with exactly the
// systemd unit's capabilities, upgraded and purged. The packages themselves
// are built by packaging/package.sh (`make package`, `make test-package`)
// from nfpm.yaml, connbeat.service and the scripts in this directory.
package packaging
