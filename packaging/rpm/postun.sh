# guardant-worker %postun ($1: 0 erase, 1 upgrade): an upgrade restarts a
# running worker; an erase drops the /usr/local plugin directories if empty.
# RPM has no purge: /var/lib/guardant (the spool) and the account stay.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart guardant-worker.service >/dev/null 2>&1 || :
    fi
fi
if [ "$1" -eq 0 ]; then
    rmdir /usr/local/lib/guardant/plugins /usr/local/lib/guardant 2>/dev/null || :
fi
exit 0
