# Every operator under operators/<kind>/handlers.py runs as its own kopf process, as in the chart.
port=18080
for handlers in operators/*/handlers.py; do
  [ -e "$handlers" ] || continue
  kind=$(basename "$(dirname "$handlers")")
  port=$((port + 1))
  start "operator-$kind" python -m kopf run --standalone --all-namespaces \
    --liveness "http://127.0.0.1:$port/healthz" -m "trellis.operators.$kind.handlers"
done
