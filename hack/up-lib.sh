# Helpers shared by hack/up.sh and hack/lab.sh (sourced; RUN and LOGS set by the caller).

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# start NAME COMMAND... — runs a component in the background once, logging to .run/logs/NAME.log.
start() {
  local name=$1; shift
  if alive "$name"; then echo "  $name: running (pid $(cat "$RUN/$name.pid"))"; return 0; fi
  setsid nohup "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! >"$RUN/$name.pid"
  echo "  $name: started (pid $!, log .run/logs/$name.log)"
}

wait_http() { # URL TIMEOUT
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for $1" >&2; return 1; }
    sleep 0.5
  done
}

# stop_all — stops every component started with `start` under $RUN (process groups, then KILL).
stop_all() {
  for pidfile in "$RUN"/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile"); name=$(basename "$pidfile" .pid)
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      echo "stopped $name"
    fi
    rm -f "$pidfile"
  done
}
