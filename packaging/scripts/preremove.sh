#!/bin/sh
# deb prerm / rpm %preun. Arguments: deb "remove" or "upgrade <new-version>";
# rpm "0" on erase, "1" on upgrade. Only a removal stops the service.
set -e

case "$1" in
    remove | 0) ;;
    *) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
    systemctl stop connbeat.service >/dev/null 2>&1 || true
fi
systemctl --no-reload disable connbeat.service >/dev/null 2>&1 || true
