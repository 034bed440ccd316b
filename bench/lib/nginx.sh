# shellcheck shell=bash
# The benchmarks' web target, shared by bench/run.sh and bench/queue/run.sh:
# nginx with one worker (the same fixed share of the 2 cores for every
# prober) serving a ~600-byte page, like nginx's welcome page, on a free
# 127.0.0.1 port. Sourced; the caller provides WORK (a private dir), PIDS
# (stopped on exit), free_port, wait_http and log.
# Sets NGINX_PORT, NGINX_PID and WEB_TARGET.
start_bench_nginx() {
  NGINX_PORT=$(free_port)
  mkdir -p "$WORK/nginx/www" "$WORK/nginx/tmp" "$WORK/nginx/logs"
  python3 -c 'print("<!doctype html><title>guardant bench</title><p>" + "ok " * 180 + "</p>")' \
    >"$WORK/nginx/www/index.html"
  chmod -R a+rX "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile 30000;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    root $WORK/nginx/www;
    location / { }
  }
}
NGINX
  nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' 2>"$WORK/nginx/logs/stderr" &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  WEB_TARGET="http://127.0.0.1:$NGINX_PORT/index.html"
  wait_http "$WEB_TARGET"
  log "nginx on 127.0.0.1:$NGINX_PORT (pid $NGINX_PID)"
}
