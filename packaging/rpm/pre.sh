# guardant-worker %pre: the system user (Fedora's useradd pattern; the same
# account is declared in /usr/lib/sysusers.d/guardant-worker.conf).
getent group guardant >/dev/null || groupadd -r guardant
getent passwd guardant >/dev/null || \
    useradd -r -g guardant -d /var/lib/guardant -s /sbin/nologin -c "Guardant Worker" guardant
exit 0
