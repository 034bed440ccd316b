# guardant-worker %preun ($1: 0 erase, 1 upgrade): on erase, stop and disable
# the worker (it drains in-flight checks first).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now guardant-worker.service >/dev/null 2>&1 || :
    systemctl stop 'guardant-worker@*.service' >/dev/null 2>&1 || :
fi
exit 0
