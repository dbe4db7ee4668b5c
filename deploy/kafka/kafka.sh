#!/usr/bin/env bash
# Run Apache Kafka (KRaft, combined broker+controller) from Maven Central jars.
#
#   kafka.sh fetch                 jars into .cache/kafka/<version>/libs (once)
#   kafka.sh up | down             one node on 127.0.0.1:${KAFKA_PORT:-9092}
#   kafka.sh cluster-up | cluster-down
#                                  three nodes on 127.0.0.1:19092,19093,19094
#   kafka.sh cluster-node-down N   stop node N (1-3) of the cluster; cluster-up restarts it
#   kafka.sh status                what runs (exit 0 if anything, 3 if nothing)
#   kafka.sh bootstrap [single|cluster]
#                                  print the bootstrap servers of what runs
#   kafka.sh clean                 stop everything and delete .run/kafka
#
# Environment: KAFKA_PORT, KAFKA_CONTROLLER_PORT (9093), KAFKA_CLUSTER_PORT (19092,
# nodes use it +0..2), KAFKA_CLUSTER_CONTROLLER_PORT (19192), KAFKA_HEAP_OPTS,
# KAFKA_JVM_OPTS, KAFKA_START_TIMEOUT (90 s), KAFKA_STOP_TIMEOUT (30 s),
# KAFKA_PYTHON (a Python with aiokafka; default .venv/bin/python).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
POM="$HERE/pom.xml"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
CACHE="$ROOT/.cache/kafka/$KAFKA_VERSION"
LIBS="$CACHE/libs"
RUN="$ROOT/.run/kafka"
HEAP="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
SINGLE_PORT="${KAFKA_PORT:-9092}"
SINGLE_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
CLUSTER_PORT="${KAFKA_CLUSTER_PORT:-19092}"
CLUSTER_CONTROLLER_PORT="${KAFKA_CLUSTER_CONTROLLER_PORT:-19192}"
CLUSTER_NODES=3

say() { echo "kafka.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

check_port_number() {
  [[ "$1" =~ ^[0-9]+$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)) || die "invalid port '$1' (want 1-65535)"
}

need_java() {
  command -v java >/dev/null 2>&1 || die "Java 17+ is required but 'java' is not on PATH."
  local version major
  version="$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
  major="${version%%.*}"
  [[ "$major" == 1 ]] && major="$(echo "$version" | cut -d. -f2)"
  [[ "$major" =~ ^[0-9]+$ ]] && ((major >= 17)) || die "Java 17+ is required but 'java' is version '${version:-unknown}'."
}

need_python() {
  local candidate
  for candidate in "${KAFKA_PYTHON:-}" "$ROOT/.venv/bin/python" python3; do
    [[ -n "$candidate" ]] || continue
    if "$candidate" -c 'import aiokafka' >/dev/null 2>&1; then
      PY="$candidate"
      return
    fi
  done
  die "a Python with aiokafka is required to probe the broker: create the project venv (.venv) or set KAFKA_PYTHON."
}

cmd_fetch() {
  local want stamp tmp
  want="$( (sha256sum "$POM" 2>/dev/null || shasum -a 256 "$POM") | cut -d' ' -f1)"
  stamp="$CACHE/.complete"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -d "$LIBS" ]]; then
    return
  fi
  command -v mvn >/dev/null 2>&1 || die "Maven is required to fetch the Kafka jars but 'mvn' is not on PATH."
  need_java
  say "fetching Kafka $KAFKA_VERSION jars into $LIBS"
  mkdir -p "$CACHE"
  tmp="$CACHE/libs.tmp.$$"
  rm -rf "$tmp"
  if ! mvn -B -f "$POM" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" -DincludeScope=runtime >"$CACHE/fetch.log" 2>&1; then
    rm -rf "$tmp"
    tail -n 30 "$CACHE/fetch.log" >&2
    die "Maven could not fetch the Kafka jars (full output: $CACHE/fetch.log)."
  fi
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  echo "$want" >"$stamp"
}

# pid_of DIR: print the pid of the broker started from DIR if it is alive.
pid_of() {
  local dir="$1" pid
  [[ -f "$dir/kafka.pid" ]] || return 1
  pid="$(cat "$dir/kafka.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  ps -p "$pid" -o args= 2>/dev/null | grep -qF -- "$dir/server.properties" || return 1
  echo "$pid"
}

port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

random_uuid() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" == -* ]] || break
  done
  echo "$id"
}

# write_config DIR NODE_ID PORT CONTROLLER_PORT QUORUM_BOOTSTRAP REPLICAS MIN_ISR
write_config() {
  local dir="$1" id="$2" port="$3" cport="$4" quorum="$5" rf="$6" isr="$7"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=$id
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=$quorum
log.dirs=$dir/data
num.network.threads=2
num.io.threads=4
num.partitions=1
auto.create.topics.enable=false
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
log.segment.bytes=8388608
log.retention.hours=6
log.retention.bytes=268435456
log.retention.check.interval.ms=60000
log.cleaner.dedupe.buffer.size=16777216
EOF
}

# format_node DIR CLUSTER_ID QUORUM_FLAG...
format_node() {
  local dir="$1" cid="$2"
  shift 2
  rm -rf "$dir/data"
  mkdir -p "$dir/data" "$dir/logs"
  if ! java -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$HERE/log4j2.xml" \
    -cp "$LIBS/*" kafka.tools.StorageTool format --config "$dir/server.properties" \
    --cluster-id "$cid" "$@" >"$dir/logs/format.log" 2>&1; then
    tail -n 30 "$dir/logs/format.log" >&2
    die "formatting KRaft storage in $dir failed."
  fi
}

# launch_node DIR: start the broker in the background and record its pid.
launch_node() {
  local dir="$1"
  mkdir -p "$dir/logs"
  rm -f "$dir/logs/server.log.prev" "$dir/logs/server.log".[0-9]*
  if [[ -f "$dir/logs/server.log" ]]; then mv "$dir/logs/server.log" "$dir/logs/server.log.prev"; fi
  local -a heap extra
  read -r -a heap <<<"$HEAP"
  read -r -a extra <<<"${KAFKA_JVM_OPTS:-}"
  setsid java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -Djava.awt.headless=true "${extra[@]}" -Dkafka.logs.dir="$dir/logs" -Dlog4j2.configurationFile="$HERE/log4j2.xml" \
    -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
    >"$dir/logs/console.log" 2>&1 </dev/null 9>&- &
  echo $! >"$dir/kafka.pid"
}

show_log_tail() {
  local dir="$1"
  if [[ -s "$dir/logs/server.log" ]]; then
    say "--- tail of $dir/logs/server.log ---"
    tail -n 40 "$dir/logs/server.log" >&2
  fi
  if [[ -s "$dir/logs/console.log" ]]; then
    say "--- tail of $dir/logs/console.log ---"
    tail -n 20 "$dir/logs/console.log" >&2
  fi
}

# stop_nodes DIR...: SIGTERM every live node, wait, SIGKILL what is left.
stop_nodes() {
  local dir pid entry deadline killed=0
  local -a pids=() live
  for dir in "$@"; do
    if pid="$(pid_of "$dir")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid:$dir")
    else
      rm -f "$dir/kafka.pid"
    fi
  done
  ((${#pids[@]})) || return 0
  deadline=$((SECONDS + STOP_TIMEOUT))
  while :; do
    live=()
    for entry in "${pids[@]}"; do
      if pid_of "${entry#*:}" >/dev/null; then live+=("$entry"); fi
    done
    ((${#live[@]})) || break
    if ((SECONDS >= deadline)); then
      ((killed)) && die "could not stop pid(s): ${live[*]%%:*}"
      for entry in "${live[@]}"; do
        say "node in ${entry#*:} did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "${entry%%:*}" 2>/dev/null || true
      done
      killed=1
      deadline=$((SECONDS + 10))
    fi
    sleep 0.2
  done
  for entry in "${pids[@]}"; do
    rm -f "${entry#*:}/kafka.pid"
  done
}

# wait_ready BOOTSTRAP BROKERS DIR...: poll until the cluster answers metadata.
wait_ready() {
  local bootstrap="$1" brokers="$2" dir started=$SECONDS
  shift 2
  while :; do
    if "$PY" "$HERE/probe.py" "$bootstrap" "$brokers" 3; then
      say "ready on $bootstrap after $((SECONDS - started))s"
      return 0
    fi
    for dir in "$@"; do
      if ! pid_of "$dir" >/dev/null; then
        show_log_tail "$dir"
        stop_nodes "$@"
        die "the broker in $dir exited during start."
      fi
    done
    if ((SECONDS - started >= START_TIMEOUT)); then
      for dir in "$@"; do show_log_tail "$dir"; done
      stop_nodes "$@"
      die "no answer to metadata requests on $bootstrap within ${START_TIMEOUT}s."
    fi
    sleep 1
  done
}

prepare() {
  need_java
  need_python
  cmd_fetch
}

cmd_up() {
  local dir="$RUN/single" pid quorum layout cid
  check_port_number "$SINGLE_PORT"
  check_port_number "$SINGLE_CONTROLLER_PORT"
  if pid="$(pid_of "$dir")"; then
    say "already running (pid $pid) on $(cat "$dir/bootstrap")"
    return 0
  fi
  prepare
  for p in "$SINGLE_PORT" "$SINGLE_CONTROLLER_PORT"; do
    port_busy "$p" && die "port $p on 127.0.0.1 is already in use by another process."
  done
  mkdir -p "$dir/logs"
  quorum="127.0.0.1:$SINGLE_CONTROLLER_PORT"
  write_config "$dir" 1 "$SINGLE_PORT" "$SINGLE_CONTROLLER_PORT" "$quorum" 1 1
  layout="$SINGLE_PORT $SINGLE_CONTROLLER_PORT"
  if [[ ! -f "$dir/data/meta.properties" || "$(cat "$dir/layout" 2>/dev/null)" != "$layout" ]]; then
    cid="$(random_uuid)"
    format_node "$dir" "$cid" --standalone
    echo "$cid" >"$dir/cluster.id"
    echo "$layout" >"$dir/layout"
  fi
  echo "127.0.0.1:$SINGLE_PORT" >"$dir/bootstrap"
  launch_node "$dir"
  say "started Kafka $KAFKA_VERSION (pid $(cat "$dir/kafka.pid")), waiting for 127.0.0.1:$SINGLE_PORT"
  wait_ready "127.0.0.1:$SINGLE_PORT" 1 "$dir"
}

cmd_down() {
  stop_nodes "$RUN/single"
  say "single broker stopped"
}

cluster_dirs() {
  local i
  for ((i = 1; i <= CLUSTER_NODES; i++)); do echo "$RUN/cluster/node$i"; done
}

cluster_bootstrap() {
  local i out=""
  for ((i = 0; i < CLUSTER_NODES; i++)); do out+="${out:+,}127.0.0.1:$((CLUSTER_PORT + i))"; done
  echo "$out"
}

cmd_cluster_up() {
  local base="$RUN/cluster" i dir quorum="" voters="" layout cid
  local -a dirs ids
  check_port_number "$CLUSTER_PORT"
  check_port_number "$CLUSTER_CONTROLLER_PORT"
  check_port_number "$((CLUSTER_PORT + CLUSTER_NODES - 1))"
  check_port_number "$((CLUSTER_CONTROLLER_PORT + CLUSTER_NODES - 1))"
  mapfile -t dirs < <(cluster_dirs)
  local all_up=1
  for dir in "${dirs[@]}"; do pid_of "$dir" >/dev/null || all_up=0; done
  if ((all_up)); then
    say "cluster already running on $(cluster_bootstrap)"
    return 0
  fi
  prepare
  for ((i = 0; i < CLUSTER_NODES; i++)); do
    quorum+="${quorum:+,}127.0.0.1:$((CLUSTER_CONTROLLER_PORT + i))"
  done
  layout="$CLUSTER_PORT $CLUSTER_CONTROLLER_PORT"
  local formatted=1
  for dir in "${dirs[@]}"; do [[ -f "$dir/data/meta.properties" ]] || formatted=0; done
  [[ "$(cat "$base/layout" 2>/dev/null)" == "$layout" ]] || formatted=0
  if ((!formatted)); then
    stop_nodes "${dirs[@]}"
    ids=()
    for ((i = 0; i < CLUSTER_NODES; i++)); do
      ids+=("$(random_uuid)")
      voters+="${voters:+,}$((i + 1))@127.0.0.1:$((CLUSTER_CONTROLLER_PORT + i)):${ids[i]}"
    done
    cid="$(random_uuid)"
  fi
  for ((i = 0; i < CLUSTER_NODES; i++)); do
    dir="${dirs[i]}"
    pid_of "$dir" >/dev/null && continue
    for p in $((CLUSTER_PORT + i)) $((CLUSTER_CONTROLLER_PORT + i)); do
      port_busy "$p" && die "port $p on 127.0.0.1 is already in use by another process."
    done
    mkdir -p "$dir/logs"
    write_config "$dir" $((i + 1)) $((CLUSTER_PORT + i)) $((CLUSTER_CONTROLLER_PORT + i)) "$quorum" 3 2
  done
  if ((!formatted)); then
    for dir in "${dirs[@]}"; do format_node "$dir" "$cid" --initial-controllers "$voters"; done
    echo "$cid" >"$base/cluster.id"
    echo "$layout" >"$base/layout"
  fi
  cluster_bootstrap >"$base/bootstrap"
  for dir in "${dirs[@]}"; do
    pid_of "$dir" >/dev/null || launch_node "$dir"
  done
  say "started Kafka $KAFKA_VERSION cluster, waiting for $(cluster_bootstrap)"
  wait_ready "$(cluster_bootstrap)" "$CLUSTER_NODES" "${dirs[@]}"
}

cmd_cluster_down() {
  local -a dirs
  mapfile -t dirs < <(cluster_dirs)
  stop_nodes "${dirs[@]}"
  say "cluster stopped"
}

cmd_cluster_node_down() {
  local n="${1:-}"
  [[ "$n" =~ ^[0-9]+$ ]] && ((n >= 1 && n <= CLUSTER_NODES)) || die "cluster-node-down needs a node number 1-$CLUSTER_NODES, got '$n'"
  stop_nodes "$RUN/cluster/node$n"
  say "cluster node $n stopped"
}

cmd_status() {
  local any=0 dir pid
  if pid="$(pid_of "$RUN/single")"; then
    echo "single: running (pid $pid) on $(cat "$RUN/single/bootstrap")"
    any=1
  else
    echo "single: stopped"
  fi
  while read -r dir; do
    if pid="$(pid_of "$dir")"; then
      echo "cluster ${dir##*/}: running (pid $pid)"
      any=1
    else
      echo "cluster ${dir##*/}: stopped"
    fi
  done < <(cluster_dirs)
  ((any)) || return 3
}

cluster_running() {
  local dir
  while read -r dir; do pid_of "$dir" >/dev/null && return 0; done < <(cluster_dirs)
  return 1
}

cmd_bootstrap() {
  local which="${1:-any}"
  case "$which" in
    single | any)
      if pid_of "$RUN/single" >/dev/null; then
        cat "$RUN/single/bootstrap"
        return
      fi
      ;;&
    cluster | any)
      if cluster_running; then
        cat "$RUN/cluster/bootstrap"
        return
      fi
      ;;&
    single | cluster | any) die "no Kafka ($which) is running." ;;
    *) die "bootstrap takes 'single' or 'cluster', got '$which'" ;;
  esac
}

cmd_clean() {
  cmd_down
  cmd_cluster_down
  rm -rf "$RUN"
  say "removed $RUN"
}

# Serialise commands that start or stop nodes (two `make kafka-up` at once).
take_lock() {
  mkdir -p "$RUN"
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$RUN/.lock"
  flock -w 120 9 || die "another kafka.sh holds $RUN/.lock for over 120s."
}

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    up | down | cluster-up | cluster-down | cluster-node-down | clean) take_lock ;;
  esac
  case "$cmd" in
    fetch) cmd_fetch ;;
    up) cmd_up ;;
    down) cmd_down ;;
    cluster-up) cmd_cluster_up ;;
    cluster-down) cmd_cluster_down ;;
    cluster-node-down) cmd_cluster_node_down "$@" ;;
    status) cmd_status ;;
    bootstrap) cmd_bootstrap "$@" ;;
    clean) cmd_clean ;;
    *) usage ;;
  esac
}

main "$@"
