#!/usr/bin/env bash
# Screenshot of the Dagster asset graph, taken by a real browser (headless Chromium) against `dagster dev`.
#
#   scripts/screenshot.sh [OUTPUT.png]        default: docs/asset-graph.png
#
# Environment: DAGSTER_HOME (default ./dagster_home; run `make demo` first so the graph shows
# materializations), PORT (3333), URL_PATH (default: the global asset lineage graph, /asset-groups,
# with every asset group of cloudgan_assets.definitions expanded), WINDOW (1600,1000),
# WORKSPACE (workspace.yaml), WAIT_S (seconds to wait for the server, 180), CLICK (the text of an
# element to click before the screenshot, e.g. "[Show Markdown]" to open a metadata preview; done by
# scripts/cdp_shot.py over the DevTools protocol). The composites preview in docs/:
#   URL_PATH="/assets/composites?partition=<product>&view=partitions" CLICK="[Show Markdown]" \
#       scripts/screenshot.sh docs/composites-preview.png
# It marks Dagster's one-time "Join the community" dialog as seen on the instance (the setNuxSeen
# GraphQL mutation), so that the dialog does not cover the graph.
# Chromium comes from the OS packages (apt) and is installed here on first use, not by the main install.
set -euo pipefail
set +m  # no job control: the background `setsid` runs dagster in its own session (pgid = its pid)

cd "$(dirname "$0")/.."
OUT=${1:-docs/asset-graph.png}
PORT=${PORT:-3333}
WINDOW=${WINDOW:-1600,1000}
WORKSPACE=${WORKSPACE:-workspace.yaml}
WAIT_S=${WAIT_S:-180}
export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/dagster_home}
DAGSTER=${DAGSTER:-.venv/bin/dagster}
PYTHON=${PYTHON:-.venv/bin/python}
LOG=$(mktemp -t dagster-dev.XXXXXX.log)

browser() {
    command -v chromium || command -v chromium-browser || command -v google-chrome || true
}

if [ -z "$(browser)" ]; then
    echo "installing chromium from the OS packages ..."
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
CHROMIUM=$(browser)
[ -n "$CHROMIUM" ] || { echo "no chromium after installing it" >&2; exit 1; }
[ -x "$DAGSTER" ] || { echo "$DAGSTER not found: run 'make demo' (or pip install -e .) first" >&2; exit 1; }
mkdir -p "$DAGSTER_HOME" "$(dirname "$OUT")"

PGID=""
stop_dagster() {
    [ -n "$PGID" ] || return 0
    # dagster dev (and its code server / daemon children) may ignore SIGTERM: ask, wait, then SIGKILL the group
    kill -TERM -- "-$PGID" 2>/dev/null || true
    for _ in $(seq 20); do
        kill -0 -- "-$PGID" 2>/dev/null || { wait "$PGID" 2>/dev/null || true; PGID=""; return 0; }
        sleep 0.5
    done
    kill -KILL -- "-$PGID" 2>/dev/null || true
    wait "$PGID" 2>/dev/null || true
    PGID=""
}
trap stop_dagster EXIT

echo "starting dagster dev on port $PORT (log: $LOG) ..."
setsid "$DAGSTER" dev -w "$WORKSPACE" -p "$PORT" -h 127.0.0.1 >"$LOG" 2>&1 < /dev/null &
PGID=$!

ready=""
for _ in $(seq "$WAIT_S"); do
    if ! kill -0 "$PGID" 2>/dev/null; then
        echo "dagster dev exited early; its log:" >&2; tail -40 "$LOG" >&2; exit 1
    fi
    if "$PYTHON" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
        "http://127.0.0.1:$PORT/server_info" 2>/dev/null; then
        ready=1; break
    fi
    sleep 1
done
[ -n "$ready" ] || { echo "dagster dev did not answer within $WAIT_S s; its log:" >&2; tail -40 "$LOG" >&2; exit 1; }
# wait until every code location has loaded (fail on a load error: the graph would be empty), then
# mark the one-time community dialog as seen on this instance so it does not cover the graph
"$PYTHON" - "http://127.0.0.1:$PORT/graphql" <<'PY'
import json, sys, time, urllib.request

def gql(query):
    req = urllib.request.Request(sys.argv[1], data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=30).read())["data"]

WORKSPACE = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
for _ in range(120):
    entries = gql(WORKSPACE)["workspaceOrError"].get("locationEntries") or []
    if entries and all(e["loadStatus"] == "LOADED" for e in entries):
        break
    time.sleep(1)
else:
    sys.exit(f"code locations did not load in time: {entries}")
errors = [e for e in entries if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
if errors:
    sys.exit("code location failed to load: " + "; ".join(f"{e['name']}: {e['locationOrLoadError']['message']}"
                                                         for e in errors))
gql("mutation { setNuxSeen }")
PY
if [ -z "${URL_PATH:-}" ]; then
    # expand every asset group (the UI shows them collapsed otherwise): ?expanded=global@global:<group>,...
    URL_PATH=$("$PYTHON" - <<'PY'
import urllib.parse
import warnings

warnings.filterwarnings("ignore")
from cloudgan_assets.definitions import defs

graph = defs.resolve_asset_graph()
groups = sorted({graph.get(k).group_name for k in graph.get_all_asset_keys()} - {None})
print("/asset-groups?expanded=" + urllib.parse.quote(",".join(f"global@global:{g}" for g in groups), safe=","))
PY
)
fi

echo "taking the screenshot of http://127.0.0.1:$PORT$URL_PATH ${CLICK:+after a click on $CLICK }..."
if [ -n "${CLICK:-}" ]; then
    "$PYTHON" scripts/cdp_shot.py --chromium "$CHROMIUM" --window "$WINDOW" --click "$CLICK" \
        "http://127.0.0.1:$PORT$URL_PATH" "$OUT"
else
    "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
        --window-size="$WINDOW" --virtual-time-budget=15000 --screenshot="$OUT" \
        "http://127.0.0.1:$PORT$URL_PATH" >/dev/null 2>&1
fi
stop_dagster
[ -s "$OUT" ] || { echo "no screenshot written to $OUT" >&2; exit 1; }
echo "wrote $OUT"
