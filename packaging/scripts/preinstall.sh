#!/bin/sh
# deb preinst / rpm %pre: the connbeat user and group exist before the files
# are unpacked, so that dpkg and rpm give the package's directories and its
# config file their owner and group by name.
set -e

if ! getent group connbeat >/dev/null 2>&1; then
    groupadd --system connbeat
fi
if ! getent passwd connbeat >/dev/null 2>&1; then
    useradd --system --gid connbeat --no-create-home --home-dir /var/lib/connbeat \
        --shell /usr/sbin/nologin --comment "connbeat agent" connbeat
fi
