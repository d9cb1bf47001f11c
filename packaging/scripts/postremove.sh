#!/bin/sh
# deb postrm / rpm %postun. Arguments: deb "remove", "purge" or "upgrade";
# rpm "0" on erase, "1" on upgrade. dpkg keeps data, logs and the user until
# purge; rpm has no purge, so an erase cleans up as dpkg --purge does (rpm
# keeps an edited config as /etc/connbeat/connbeat.yml.rpmsave).
set -e

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi

case "$1" in
    purge | 0) ;;
    *) exit 0 ;;
esac
rm -rf /var/lib/connbeat /var/log/connbeat
rmdir /etc/connbeat 2>/dev/null || true
if getent passwd connbeat >/dev/null 2>&1; then
    userdel connbeat || echo "connbeat: could not remove the connbeat user (is a process still running as connbeat?)" >&2
fi
if getent group connbeat >/dev/null 2>&1; then
    groupdel connbeat || echo "connbeat: could not remove the connbeat group" >&2
fi
