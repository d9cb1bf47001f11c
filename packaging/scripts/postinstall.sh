#!/bin/sh
# deb postinst / rpm %post. Arguments: deb "configure <old-version>" (no old
# version on a first install); rpm "1" on install, "2" on upgrade.
set -e

upgrade=false
case "$1" in
    configure) [ -n "$2" ] && upgrade=true ;;
    2) upgrade=true ;;
esac

# connbeat writes its data and logs as the connbeat user, and nothing else.
chown connbeat:connbeat /var/lib/connbeat /var/log/connbeat
chmod 0750 /var/lib/connbeat /var/log/connbeat

# The service is not enabled or started on install: the operator chooses an
# output in /etc/connbeat/connbeat.yml first. An upgrade restarts it if it runs.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    if $upgrade; then
        systemctl try-restart connbeat.service >/dev/null 2>&1 || true
    fi
fi
