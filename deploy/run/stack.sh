#!/usr/bin/env bash
# Run the Dynasync stack in the background: Kafka, the topics, both emulators and a worker.
#
#   stack.sh up       start what is not running yet, wait until each answers, print where
#   stack.sh down     stop what the stack started, in reverse order (a no-op if nothing runs)
#   stack.sh status   what runs (exit 0 if anything, 3 if nothing)
#
# Logs and pids live in .run/stack/<name>.{log,pid}. A Kafka broker that already answers on
# KAFKA_PORT before `up` is reused and never stopped by `down`. A failed start prints the tail
# of that component's log and exits 1; what already runs keeps running (fix, then `up` again).
#
# Environment: WORKERS (1: one `dynasync run` with its own webhook receiver, pid in worker.pid;
# N > 1: N workers sharing the mailboxes by partition, pids in worker-1.pid ... worker-N.pid,
# and one `dynasync receiver` process they all read from), KAFKA_PORT (9092), GRAPH_PORT (8081),
# DATAVERSE_PORT (8082), RECEIVER_PORT (8090: the webhook receiver), WEB_PORT (6066: worker N's
# status page, /metrics, /healthz and /readyz on WEB_PORT+N-1; 0: any free port, read from its
# log), STACK_RUN_DIR (.run/stack), STACK_PYTHON (.venv/bin/python),
# STACK_START_TIMEOUT (60 s), STACK_STOP_TIMEOUT (15 s), WORKER_ARGS (arguments of the worker's
# `dynasync run`; default: the Graph emulator's URL and webhooks on, the receiver's URL given as
# the notification URL, so Graph notifications drive the Outlook reads and the rest is polled
# with idle backoff).
#
# Secrets never go on a command line, into .run/stack or into this script's output: the worker
# gets DYNASYNC_GRAPH__STATIC_TOKEN / DYNASYNC_DATAVERSE__STATIC_TOKEN through its environment
# (the ones set here or in .env; else a fixed token, the emulators take any bearer token).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RUN="${STACK_RUN_DIR:-$ROOT/.run/stack}"
KAFKA_SH="$ROOT/deploy/kafka/kafka.sh"
PY="${STACK_PYTHON:-$ROOT/.venv/bin/python}"
# down/status use the port `up` used unless KAFKA_PORT says otherwise
KAFKA_PORT="${KAFKA_PORT:-$(cat "$RUN/kafka.port" 2>/dev/null || echo 9092)}"
GRAPH_PORT="${GRAPH_PORT:-8081}"
DATAVERSE_PORT="${DATAVERSE_PORT:-8082}"
RECEIVER_PORT="${RECEIVER_PORT:-${DYNASYNC_RECEIVER__PORT:-8090}}"
WEB_PORT="${WEB_PORT:-${DYNASYNC_WEB__PORT:-6066}}"
START_TIMEOUT="${STACK_START_TIMEOUT:-60}"
STOP_TIMEOUT="${STACK_STOP_TIMEOUT:-15}"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
ECHO_IN="stack.echo.in"
ECHO_OUT="stack.echo.out"
# The worker: the whole pipeline (`dynasync run`) against the two emulators, with webhooks (the
# Graph emulator delivers notifications to the subscription's notificationUrl).
WORKER_ARGS="${WORKER_ARGS:---graph-url http://127.0.0.1:$GRAPH_PORT/v1.0 --notification-url http://127.0.0.1:$RECEIVER_PORT}"
# What the worker authenticates with when no token is configured (not a secret: the emulators
# accept any bearer token).
EMULATOR_TOKEN="stack-emulator"
WORKER_SECRETS=(DYNASYNC_GRAPH__STATIC_TOKEN DYNASYNC_DATAVERSE__STATIC_TOKEN)

# How many workers: WORKERS, else what `up` started, else one.
WORKERS="${WORKERS:-$(cat "$RUN/workers" 2>/dev/null || echo 1)}"

# The background services in start order (`down` stops them in reverse). Each has a readiness
# check ("http:PORT", "tcp:PORT" or "log:TEXT"), a command and a place it serves.
services() {
  local n
  if [[ "$WORKERS" == 1 ]]; then
    SERVICES=(graph dataverse worker)
  else
    SERVICES=(graph dataverse receiver)
    for ((n = 1; n <= WORKERS; n++)); do SERVICES+=("worker-$n"); done
  fi
}

say() { echo "stack: $*" >&2; }
die() {
  say "$*"
  exit 1
}

check_port() {
  [[ "$2" =~ ^[0-9]+$ ]] && ((10#$2 >= 1 && 10#$2 <= 65535)) || die "invalid $1 '$2' (want 1-65535)"
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

service_ready() {
  case "$1" in graph) echo "http:$GRAPH_PORT" ;; dataverse) echo "http:$DATAVERSE_PORT" ;;
  worker | worker-*) echo "log:dynasync run: ready" ;;
  receiver) echo "log:dynasync receiver: ready" ;; esac
}

service_cmd() {
  case "$1" in
    graph) echo "$PY -m emulators.graph --host 127.0.0.1 --port $GRAPH_PORT" ;;
    dataverse) echo "$PY -m emulators.dataverse --host 127.0.0.1 --port $DATAVERSE_PORT" ;;
    worker | worker-*) echo "$PY -m pipeline.cli run --bootstrap $BOOTSTRAP $WORKER_ARGS" ;;
    receiver) echo "$PY -m pipeline.cli receiver --bootstrap $BOOTSTRAP --port $RECEIVER_PORT" ;;
  esac
}

# web_port NAME: the port a worker is given for its status page (0: any free one).
web_port() {
  local n=1
  [[ "$1" == worker-* ]] && n="${1#worker-}"
  if ((10#$WEB_PORT == 0)); then echo 0; else echo $((10#$WEB_PORT + n - 1)); fi
}

# web_url NAME: where a worker serves its status page, as its log says.
web_url() {
  local line
  line="$(grep -o 'status page, /metrics, /healthz and /readyz on http://[0-9.:]*' \
    "$RUN/$1.log" 2>/dev/null | tail -n 1)" || true
  echo "${line##* on }"
}

service_where() {
  case "$1" in
    graph) echo "http://127.0.0.1:$GRAPH_PORT" ;;
    dataverse) echo "http://127.0.0.1:$DATAVERSE_PORT" ;;
    worker | worker-*) echo "status page $(web_url "$1")/ (metrics, healthz, readyz there); Kafka $BOOTSTRAP, dynasync run $WORKER_ARGS" ;;
    receiver) echo "http://127.0.0.1:$RECEIVER_PORT (Graph notifications to Kafka)" ;;
  esac
}

# owned NAME: the mailboxes a worker held when it last said (its log's last ownership line).
owned() {
  local line
  line="$(grep -o 'mailboxes owned: .*' "$RUN/$1.log" 2>/dev/null | tail -n 1)" || true
  echo "${line:-mailboxes owned: not known yet}"
}

# export_worker_secrets: (in the worker's subshell) its tokens, through its environment only;
# a token configured in the environment or in .env is left as it is.
export_worker_secrets() {
  local var
  for var in "${WORKER_SECRETS[@]}"; do
    if [[ -z "${!var:-}" ]] && ! grep -qsE "^[[:space:]]*(export[[:space:]]+)?$var=" "$ROOT/.env"; then
      export "$var=$EMULATOR_TOKEN"
    fi
  done
}

# service_available NAME: false (with the reason on stdout) when its code is not there yet.
service_available() {
  case "$1" in
    graph) [[ -f "$ROOT/emulators/graph/__main__.py" ]] || {
      echo "emulators/graph/__main__.py does not exist yet"
      return 1
    } ;;
  esac
  return 0
}

# pid_of NAME: the pid of the service if it runs and is the process we started.
pid_of() {
  local name="$1" pid marker
  [[ -f "$RUN/$name.pid" ]] || return 1
  pid="$(cat "$RUN/$name.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  marker="$(cat "$RUN/$name.cmd" 2>/dev/null)" || return 1
  [[ "$(ps -p "$pid" -o args= 2>/dev/null)" == "$marker"* ]] || return 1
  echo "$pid"
}

show_tail() {
  say "--- tail of $RUN/$1.log ---"
  tail -n 30 "$RUN/$1.log" >&2 2>/dev/null || true
}

# answers NAME: the readiness check of a service passes.
answers() {
  local check
  check="$(service_ready "$1")"
  case "$check" in
    http:*) curl -s -o /dev/null --max-time 2 "http://127.0.0.1:${check#http:}/" ;;
    tcp:*) port_open "${check#tcp:}" ;;
    log:*) grep -qF -- "${check#log:}" "$RUN/$1.log" 2>/dev/null ;;
  esac
}

start_service() {
  local name="$1" pid reason cmd started=$SECONDS
  if pid="$(pid_of "$name")"; then
    say "$name already running (pid $pid): $(service_where "$name")"
    return 0
  fi
  if ! reason="$(service_available "$name")"; then
    say "$name not available yet ($reason); skipped"
    return 0
  fi
  local check
  check="$(service_ready "$name")"
  if [[ "$check" == http:* ]] && port_open "${check#http:}"; then
    die "$name: port ${check#http:} on 127.0.0.1 is already in use by another process."
  fi
  if [[ "$name" == receiver || ("$name" == worker && " $WORKER_ARGS " == *" --notification-url "*) ]] &&
    port_open "$RECEIVER_PORT"; then
    die "worker: its webhook receiver's port $RECEIVER_PORT on 127.0.0.1 is already in use" \
      "by another process (set RECEIVER_PORT)."
  fi
  if [[ "$name" == worker* ]] && (($(web_port "$name") != 0)) && port_open "$(web_port "$name")"; then
    die "$name: its status page's port $(web_port "$name") on 127.0.0.1 is already in use" \
      "by another process (set WEB_PORT)."
  fi
  cmd="$(service_cmd "$name")"
  local -a argv
  local launched
  read -r -a argv <<<"$cmd"
  : >"$RUN/$name.log" # a ready line left by an earlier run must not pass for this one's
  (
    cd "$ROOT"
    case "$name" in
      worker) export_worker_secrets ;;
      worker-*) # the receiver process serves the notification URL
        export_worker_secrets
        export DYNASYNC_RECEIVER__ENABLED=false ;;
      receiver) export_worker_secrets ;; # the same Graph credential: the same clientState key
    esac
    export DYNASYNC_RECEIVER__PORT="$RECEIVER_PORT"
    [[ "$name" == worker* ]] && export DYNASYNC_WEB__PORT="$(web_port "$name")"
    exec setsid "${argv[@]}" >"$RUN/$name.log" 2>&1 </dev/null
  ) &
  launched=$!
  echo "$launched" >"$RUN/$name.pid"
  echo "$cmd" >"$RUN/$name.cmd"
  while ! answers "$name"; do
    # alive, even before its subshell has become the command (pid_of would not know it yet)
    if ! kill -0 "$launched" 2>/dev/null; then
      show_tail "$name"
      rm -f "$RUN/$name.pid"
      die "$name exited during start (command: $cmd)"
    fi
    if ((SECONDS - started >= START_TIMEOUT)); then
      show_tail "$name"
      stop_service "$name"
      die "$name did not answer within ${START_TIMEOUT}s (command: $cmd)"
    fi
    sleep 0.3
  done
  say "$name ready (pid $(cat "$RUN/$name.pid")) after $((SECONDS - started))s: $(service_where "$name")"
}

stop_service() {
  local name="$1" pid deadline
  if ! pid="$(pid_of "$name")"; then
    rm -f "$RUN/$name.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while pid_of "$name" >/dev/null; do
    if ((SECONDS >= deadline)); then
      say "$name (pid $pid) did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$RUN/$name.pid"
  say "$name stopped (pid $pid)"
}

start_kafka() {
  if [[ -f "$RUN/kafka.started" ]] && "$KAFKA_SH" bootstrap single >/dev/null 2>&1; then
    say "kafka already running (started by the stack): $BOOTSTRAP"
    return 0
  fi
  rm -f "$RUN/kafka.started"
  if port_open "$KAFKA_PORT"; then
    say "kafka: reusing the broker already on $BOOTSTRAP (not started here; down leaves it)"
    return 0
  fi
  if ! KAFKA_PORT="$KAFKA_PORT" "$KAFKA_SH" up >"$RUN/kafka.log" 2>&1; then
    show_tail kafka
    die "kafka did not start (see $RUN/kafka.log and .run/kafka/single/logs)"
  fi
  touch "$RUN/kafka.started"
  say "kafka ready: $BOOTSTRAP (logs in .run/kafka/single/logs)"
}

stop_kafka() {
  if [[ -f "$RUN/kafka.started" ]]; then
    "$KAFKA_SH" down >>"$RUN/kafka.log" 2>&1 || {
      show_tail kafka
      die "kafka did not stop"
    }
    rm -f "$RUN/kafka.started"
    say "kafka stopped"
  elif port_open "$KAFKA_PORT"; then
    say "kafka on $BOOTSTRAP was not started by the stack; left running"
  fi
}

create_topics() {
  if ! (cd "$ROOT" && "$PY" -m pipeline.cli topics create --bootstrap "$BOOTSTRAP") \
    >"$RUN/topics.log" 2>&1; then
    show_tail topics
    die "creating the topics failed"
  fi
  if ! (cd "$ROOT" && "$PY" - "$BOOTSTRAP" "$ECHO_IN" "$ECHO_OUT") >>"$RUN/topics.log" 2>&1 <<'EOF'; then
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
async def main(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        have = set(await admin.list_topics())
        new = [NewTopic(n, 1, 1) for n in names if n not in have]
        if new:
            await admin.create_topics(new)
        print("echo topics:", *names)
    finally:
        await admin.close()
asyncio.run(main(*sys.argv[1:]))
EOF
    show_tail topics
    die "creating the echo topics failed"
  fi
  say "topics ready on $BOOTSTRAP ($(grep -c . "$RUN/topics.log") lines in $RUN/topics.log)"
}

cmd_up() {
  check_port KAFKA_PORT "$KAFKA_PORT"
  check_port GRAPH_PORT "$GRAPH_PORT"
  check_port DATAVERSE_PORT "$DATAVERSE_PORT"
  check_port RECEIVER_PORT "$RECEIVER_PORT"
  [[ "$WEB_PORT" == 0 ]] || check_port WEB_PORT "$WEB_PORT"
  [[ "$WORKERS" =~ ^[0-9]+$ ]] && ((10#$WORKERS >= 1 && 10#$WORKERS <= 16)) ||
    die "invalid WORKERS '$WORKERS' (want 1-16)"
  [[ "$WEB_PORT" == 0 ]] || ((10#$WEB_PORT + 10#$WORKERS - 1 <= 65535)) ||
    die "invalid WEB_PORT '$WEB_PORT': its $WORKERS worker(s) need WEB_PORT..WEB_PORT+$((WORKERS - 1)) within 1-65535"
  if [[ -f "$RUN/workers" && "$(cat "$RUN/workers")" != "$WORKERS" ]] && any_running; then
    die "the stack runs with $(cat "$RUN/workers") worker(s); make down first to change WORKERS"
  fi
  [[ -x "$PY" ]] || die "no Python at $PY: run 'make venv' or set STACK_PYTHON"
  command -v curl >/dev/null 2>&1 || die "curl is required to probe the emulators"
  if [[ " $WORKER_ARGS " =~ [[:space:]]--(graph|dataverse)-token[=[:space:]] ]]; then
    die "WORKER_ARGS: --${BASH_REMATCH[1]}-token would show the secret in ps; set" \
      "DYNASYNC_${BASH_REMATCH[1]^^}__STATIC_TOKEN or pass --${BASH_REMATCH[1]}-token-file PATH (mode 0600)"
  fi
  mkdir -p "$RUN"
  chmod 700 "$RUN" # logs and pids of this user's processes only
  echo "$KAFKA_PORT" >"$RUN/kafka.port"
  WORKERS=$((10#$WORKERS))
  echo "$WORKERS" >"$RUN/workers"
  services
  start_kafka
  create_topics
  local name
  for name in "${SERVICES[@]}"; do start_service "$name"; done
  say "up. logs and pids in $RUN; stop with: make down"
}

# any_running: a service of the stack still runs.
any_running() {
  local name
  services
  for name in "${SERVICES[@]}"; do pid_of "$name" >/dev/null && return 0; done
  return 1
}

cmd_down() {
  local i
  services
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop_service "${SERVICES[i]}"; done
  stop_kafka
  rm -f "$RUN/workers"
}

cmd_status() {
  local any=0 name pid
  services
  if [[ -f "$RUN/kafka.started" ]] && "$KAFKA_SH" bootstrap single >/dev/null 2>&1; then
    echo "kafka      running on $BOOTSTRAP (started by the stack)"
    any=1
  elif port_open "$KAFKA_PORT"; then
    echo "kafka      answering on $BOOTSTRAP (not started by the stack)"
  else
    echo "kafka      stopped"
  fi
  for name in "${SERVICES[@]}"; do
    if pid="$(pid_of "$name")"; then
      printf '%-10s running (pid %s): %s\n' "$name" "$pid" "$(service_where "$name")"
      [[ "$name" == worker* ]] && printf '%-10s %s\n' "" "$(owned "$name")"
      any=1
    else
      printf '%-10s stopped\n' "$name"
    fi
  done
  ((any)) || return 3
}

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) usage ;;
esac
