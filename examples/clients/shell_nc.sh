#!/bin/sh
# Switchboard from a shell: one JSON-RPC request per line, piped through socat or nc.
#
#   switchboard serve --listen tcp://127.0.0.1:7400 &
#   ./shell_nc.sh                          # tcp://127.0.0.1:7400, with socat (or nc if no socat)
#   ./shell_nc.sh unix:///run/sb.sock      # a Unix socket listener
#   SB_TOOL=nc ./shell_nc.sh               # force nc (OpenBSD netcat: -N, -w, -U)
#
# The same as one-liners:
#
#   printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"ping"}' | socat -t 5 - TCP:127.0.0.1:7400
#   printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' | nc -N -w 5 127.0.0.1 7400
#   printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"gateway/status"}' | socat -t 5 - UNIX-CONNECT:/run/sb.sock
#
#   # MCP 2026-07-28 (modern era): discover, then a stamped ping
#   printf '%s\n' \
#     '{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}' \
#     '{"jsonrpc":"2.0","id":2,"method":"ping"}' | socat -t 5 - TCP:127.0.0.1:7400
#
# After its input ends, the tool half-closes the connection; the gateway answers
# what it received and the tool prints each reply line. `-t 5` / `-w 5` only bound
# the wait for replies. Prints one JSON reply per line; exit status is the tool's.
set -eu

URL=${1:-tcp://127.0.0.1:7400}

requests() {
  printf '%s\n' \
    '{"jsonrpc":"2.0","id":1,"method":"ping"}' \
    '{"jsonrpc":"2.0","id":2,"method":"tools/list"}' \
    '{"jsonrpc":"2.0","id":3,"method":"gateway/status"}'
}

if [ -n "${SB_TOOL:-}" ]; then
  TOOL=$SB_TOOL
elif command -v socat >/dev/null 2>&1; then
  TOOL=socat
else
  TOOL=nc
fi

case "$URL" in
  tcp://*)
    HOSTPORT=${URL#tcp://}
    HOST=${HOSTPORT%:*}
    PORT=${HOSTPORT##*:}
    if [ "$TOOL" = socat ]; then
      requests | socat -t 5 - "TCP:$HOST:$PORT"
    else
      requests | nc -N -w 5 "$HOST" "$PORT"
    fi
    ;;
  unix://*)
    SOCK=${URL#unix://}
    if [ "$TOOL" = socat ]; then
      requests | socat -t 5 - "UNIX-CONNECT:$SOCK"
    else
      requests | nc -N -w 5 -U "$SOCK"
    fi
    ;;
  *)
    echo "usage: $0 [tcp://HOST:PORT | unix:///PATH]" >&2
    exit 64
    ;;
esac
