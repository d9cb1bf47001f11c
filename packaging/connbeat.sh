#!/bin/sh
# /usr/bin/connbeat: runs connbeat with the package's paths, as the systemd
# unit does, so that `connbeat test config`, `connbeat keystore ...` and a run
# by hand see the same config, data and logs as the service.
exec /usr/share/connbeat/bin/connbeat \
    --path.home /usr/share/connbeat \
    --path.config /etc/connbeat \
    --path.data /var/lib/connbeat \
    --path.logs /var/log/connbeat \
    "$@"
