#!/bin/bash
# Like the official image: the default user from the environment, reachable from other hosts,
# the cluster's cookie (RABBITMQ_ERLANG_COOKIE), extra config in /etc/rabbitmq/conf.d, logs on
# stdout, the server as PID 1 running as the rabbitmq user.
set -euo pipefail
if [ "${1:-}" = rabbitmq-server ] && [ "$(id -u)" = 0 ]; then
  {
    echo "loopback_users = none"
    echo "listeners.tcp.default = 5672"
    echo "log.console = true"
    echo "log.file = false"
    echo "default_user = ${RABBITMQ_DEFAULT_USER:-guest}"
    echo "default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}"
  } >/etc/rabbitmq/rabbitmq.conf
  mkdir -p /var/lib/rabbitmq /var/log/rabbitmq
  if [ -n "${RABBITMQ_ERLANG_COOKIE:-}" ]; then  # the nodes of one cluster share it
    printf '%s' "$RABBITMQ_ERLANG_COOKIE" >/var/lib/rabbitmq/.erlang.cookie
    chmod 600 /var/lib/rabbitmq/.erlang.cookie
  fi
  chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
  exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server
fi
exec "$@"
