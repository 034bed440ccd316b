# guardant-worker %post ($1: 1 install, 2 upgrade). Not enabled or started on
# install: a queue-mode node needs its Redis settings first. The empty
# third-party plugin directory below /usr/local is made here, never shipped.
if [ ! -e /usr/local/lib/guardant/plugins ] && [ -d /usr/local ]; then
    install -d -m 0755 /usr/local/lib/guardant /usr/local/lib/guardant/plugins 2>/dev/null || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
