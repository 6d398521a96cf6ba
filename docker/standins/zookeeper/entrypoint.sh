#!/bin/bash
# Like the official image: zoo.cfg from ZOO_* variables (ZOO_MY_ID and ZOO_SERVERS for an
# ensemble), the server in the foreground as PID 1.
set -euo pipefail
if [ "${1:-}" = zkServer.sh ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$ZOO_CONF_DIR" "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR"
  {
    echo "tickTime=${ZOO_TICK_TIME:-2000}"
    echo "initLimit=${ZOO_INIT_LIMIT:-5}"
    echo "syncLimit=${ZOO_SYNC_LIMIT:-2}"
    echo "maxClientCnxns=${ZOO_MAX_CLIENT_CNXNS:-60}"
    [ -n "${ZOO_MAX_SESSION_TIMEOUT:-}" ] && echo "maxSessionTimeout=$ZOO_MAX_SESSION_TIMEOUT"
    echo "dataDir=$ZOO_DATA_DIR"
    echo "dataLogDir=$ZOO_DATA_LOG_DIR"
    echo "clientPort=2181"
    echo "admin.enableServer=false"
    echo "4lw.commands.whitelist=${ZOO_4LW_COMMANDS_WHITELIST:-srvr}"
    if [ -n "${ZOO_SERVERS:-}" ]; then  # an ensemble: "server.1=host:2888:3888;2181 ..."
      for server in $ZOO_SERVERS; do echo "$server"; done
      echo "standaloneEnabled=false"
    else
      echo "standaloneEnabled=true"
    fi
  } >"$ZOO_CONF_DIR/zoo.cfg"
  [ -f "$ZOO_DATA_DIR/myid" ] || echo "${ZOO_MY_ID:-1}" >"$ZOO_DATA_DIR/myid"
  # Debian's zkEnv.sh reads /etc/zookeeper/conf; run the server class directly (Debian's jar names
  # its dependencies in its manifest).
  cp /etc/zookeeper/conf/log4j.properties "$ZOO_CONF_DIR/" 2>/dev/null || true
  chown -R zookeeper:zookeeper "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR"
  # shellcheck disable=SC2086
  exec setpriv --reuid=zookeeper --regid=zookeeper --init-groups \
    java ${JVMFLAGS:--Xmx256m} -Dzookeeper.log.dir=/tmp -Dzookeeper.root.logger=INFO,CONSOLE \
      -Dlog4j.configuration="file:$ZOO_CONF_DIR/log4j.properties" \
      -cp "$ZOO_CONF_DIR:/usr/share/java/zookeeper.jar" org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZOO_CONF_DIR/zoo.cfg"
fi
exec "$@"
