#!/usr/bin/env bash
# Serve the deployments on this machine: a local Prefect server (SQLite, 127.0.0.1), the process work
# pool, our block types, every deployment of prefect.yaml, and one worker.
#
#   bash scripts/serve.sh            # start (idempotent: prints the URLs when already running)
#   bash scripts/serve.sh stop       # stop the worker and the server
#   bash scripts/serve.sh status
#
# State, logs and PIDs live in .prefect-local/ (PREFECT_HOME too, so ~/.prefect is never touched).
# Environment: API_GPU_PREFECT_PORT (default 4200; a free port is chosen when it is taken),
# API_GPU_SERVE_DIR (default .prefect-local), API_GPU_SKIP_SETUP=1 (skip scripts/setup.sh). The worker
# inherits this environment, so e.g. API_GPU_RENDERS_DIR set here is where local renders go.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_DIR="$(pwd)"
STATE_DIR="${API_GPU_SERVE_DIR:-$REPO_DIR/.prefect-local}"
POOL=api-gpu-process
PREFECT="$REPO_DIR/.venv/bin/prefect"
PYTHON="$REPO_DIR/.venv/bin/python"

export PREFECT_HOME="$STATE_DIR/home"
export API_GPU_REPO_DIR="$REPO_DIR"          # the deployments' pull step changes into it
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 PREFECT_CLI_PROMPT=false
# The worker asks for new runs every 2 s (Prefect's default is 10 s) unless told otherwise.
export PREFECT_WORKER_QUERY_SECONDS="${PREFECT_WORKER_QUERY_SECONDS:-2}"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

api_url() { echo "http://127.0.0.1:$(cat "$STATE_DIR/port")/api"; }

healthy() { "$PYTHON" - "$1" <<'EOF'
import sys, httpx
try:
    sys.exit(0 if httpx.get(sys.argv[1] + "/health", timeout=2).status_code == 200 else 1)
except httpx.HTTPError:
    sys.exit(1)
EOF
}

free_port() { "$PYTHON" - "$1" <<'EOF'
import socket, sys
want = int(sys.argv[1])
for port in (want, 0):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(s.getsockname()[1])
        break
EOF
}

stop_one() {  # stop_one NAME SIGNAL GRACE_S: SIGNAL to the process, SIGKILL after GRACE_S, then its leftovers
  local pidfile="$STATE_DIR/$1.pid" pid
  if ! alive "$pidfile"; then rm -f "$pidfile"; return 0; fi
  pid="$(cat "$pidfile")"
  kill "-$2" "$pid" 2>/dev/null || true
  for i in $(seq 1 $(( $3 * 2 ))); do
    kill -0 "$pid" 2>/dev/null || break
    # Prefect's worker finishes its loop on SIGINT but may not exit: after 3 s, ask with SIGTERM too.
    [ "$i" = 6 ] && [ "$2" != TERM ] && kill -TERM "$pid" 2>/dev/null
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "serve: $1 (pid $pid) still running after $3 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # Whatever it started (it leads its own process group: flow-run processes, the UI server) goes too.
  kill -TERM -- "-$pid" 2>/dev/null && sleep 1 && kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "serve: stopped $1 (pid $pid)"
}

stop_all() {
  # The worker stops taking runs on SIGINT (Prefect's graceful stop; it may not exit by itself), then the server.
  stop_one worker INT 10
  stop_one server TERM 20
}

print_urls() {
  local url; url="$(api_url)"
  echo "serve: Prefect UI   ${url%/api}"
  echo "serve: Prefect API  $url"
  echo "serve: logs in $STATE_DIR (server.log, worker.log); stop with: bash scripts/serve.sh stop"
  echo "serve: to use the CLI against it: export PREFECT_API_URL=$url PREFECT_HOME=$PREFECT_HOME"
}

start() {
  if [ "${API_GPU_SKIP_SETUP:-}" != "1" ]; then bash scripts/setup.sh; fi
  mkdir -p "$STATE_DIR" "$PREFECT_HOME"
  if alive "$STATE_DIR/server.pid" && alive "$STATE_DIR/worker.pid"; then
    echo "serve: already running"; print_urls; return 0
  fi
  stop_all

  local port; port="$(free_port "${API_GPU_PREFECT_PORT:-4200}")"
  echo "$port" > "$STATE_DIR/port"
  export PREFECT_API_URL; PREFECT_API_URL="$(api_url)"
  echo "serve: starting the Prefect server on 127.0.0.1:$port (log: $STATE_DIR/server.log)"
  setsid "$PREFECT" server start --host 127.0.0.1 --port "$port" >"$STATE_DIR/server.log" 2>&1 < /dev/null &
  echo $! > "$STATE_DIR/server.pid"
  for _ in $(seq 1 240); do
    healthy "$PREFECT_API_URL" && break
    alive "$STATE_DIR/server.pid" || { echo "serve: the server exited; see $STATE_DIR/server.log"; tail -20 "$STATE_DIR/server.log"; exit 1; }
    sleep 0.5
  done
  healthy "$PREFECT_API_URL" || { echo "serve: the server did not answer in 120 s"; stop_one server TERM 20; exit 1; }

  if ! "$PREFECT" work-pool inspect "$POOL" >/dev/null 2>&1; then
    "$PREFECT" work-pool create "$POOL" --type process >/dev/null
    echo "serve: created work pool $POOL (process)"
  fi

  # Every module under blocks/ that defines a Prefect Block (runpod, s3, ... whichever exist).
  local modules; modules="$("$PYTHON" - <<'EOF'
import importlib, inspect, pkgutil
import blocks
from prefect.blocks.core import Block
for info in pkgutil.iter_modules(blocks.__path__):
    name = f"blocks.{info.name}"
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # a block module another engineer is still writing must not stop the server
        print(f"# {name}: {type(exc).__name__}: {exc}")
        continue
    if any(inspect.isclass(o) and issubclass(o, Block) and o.__module__ == name for o in vars(module).values()):
        print(name)
EOF
)"
  while read -r module; do
    case "$module" in
      "") ;;
      "#"*) echo "serve: skipping block module ${module#\# }" ;;
      *) "$PREFECT" block register -m "$module" >/dev/null && echo "serve: registered blocks of $module" ;;
    esac
  done <<< "$modules"

  echo "serve: deploying prefect.yaml"
  "$PREFECT" --no-prompt deploy --all >"$STATE_DIR/deploy.log" 2>&1 || { cat "$STATE_DIR/deploy.log"; exit 1; }
  "$PYTHON" - "$PREFECT_API_URL" <<'EOF'
import sys, httpx
api = sys.argv[1]
for d in httpx.post(api + "/deployments/filter", json={}, timeout=10).json():
    print(f"serve: deployment {d['name']:<9} {api[:-4]}/deployments/deployment/{d['id']}")
EOF

  echo "serve: starting a worker on pool $POOL (log: $STATE_DIR/worker.log)"
  setsid "$PREFECT" worker start --pool "$POOL" --type process >"$STATE_DIR/worker.log" 2>&1 < /dev/null &
  echo $! > "$STATE_DIR/worker.pid"
  print_urls
}

case "${1:-start}" in
  start) start ;;
  stop) stop_all ;;
  status)
    for name in server worker; do
      if alive "$STATE_DIR/$name.pid"; then echo "serve: $name running (pid $(cat "$STATE_DIR/$name.pid"))"
      else echo "serve: $name not running"; fi
    done
    [ -f "$STATE_DIR/port" ] && alive "$STATE_DIR/server.pid" && print_urls || true ;;
  *) echo "usage: bash scripts/serve.sh [start|stop|status]" >&2; exit 2 ;;
esac
