#!/usr/bin/env bash
# Install what is missing (PostgreSQL, RabbitMQ, ZooKeeper, nginx) and start each backing server
# that is not answering. Idempotent; needs root on Debian/Ubuntu. Every wait has a timeout.
set -euo pipefail

need=()
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v rabbitmq-server >/dev/null || need+=(rabbitmq-server)
[ -x /usr/share/zookeeper/bin/zkServer.sh ] || need+=(zookeeper)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v java >/dev/null || need+=(default-jre-headless)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

answers() { # host port
  timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

wait_for() { # name host port seconds
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    answers "$2" "$3" && return 0
    sleep 0.1
  done
  echo "$1 is not answering on $2:$3 after $4 s" >&2
  return 1
}

if ! answers 127.0.0.1 5432; then
  echo "starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -n | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for PostgreSQL 127.0.0.1 5432 30
fi
if ! answers 127.0.0.1 5672; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached
  wait_for RabbitMQ 127.0.0.1 5672 60
fi
if ! answers 127.0.0.1 2181; then
  echo "starting ZooKeeper"
  /usr/share/zookeeper/bin/zkServer.sh start >/dev/null
  wait_for ZooKeeper 127.0.0.1 2181 60
fi
echo "PostgreSQL, RabbitMQ and ZooKeeper are answering"
