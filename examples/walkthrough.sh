#!/usr/bin/env bash
# The README's "Five minutes with curl", as one script: create a key, sign a message (and
# retry it with the same Idempotency-Key), verify the signature with Keyward and with openssl,
# read the key's audit records and check the hash chain. Stops at the first step that fails.
#
#   keyward dev                                   # in another terminal; copy the admin token
#   KEYWARD_TOKEN=... examples/walkthrough.sh
#
# KEYWARD_URL (default http://127.0.0.1:8080), KEYWARD_DATA_DIR (default ./keyward-data) and
# KEYWARD_BIN (default: `cargo run -q -p keyward-server --`) say where things are. Needs curl,
# jq and openssl.
set -euo pipefail

KW=${KEYWARD_URL:-http://127.0.0.1:8080}
TOKEN=${KEYWARD_TOKEN:?set KEYWARD_TOKEN to the admin token keyward dev printed}
DATA=${KEYWARD_DATA_DIR:-./keyward-data}
read -r -a KEYWARD <<< "${KEYWARD_BIN:-cargo run -q -p keyward-server --}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

api() { # METHOD PATH [BODY [EXTRA-HEADER]]: the JSON answer; fails on any status >= 400
  local args=(-sS --fail-with-body -X "$1" "$KW$2" -H "Authorization: Bearer $TOKEN")
  if [ $# -ge 3 ]; then args+=(-H 'Content-Type: application/json' -d "$3"); fi
  if [ $# -ge 4 ]; then args+=(-H "$4"); fi
  curl "${args[@]}"
}

echo "1. create a P-256 key"
KEY=$(api POST /v1/keys '{"name":"demo-'"$RANDOM$RANDOM"'","algorithm":"p256"}' | jq -er .id)
api GET "/v1/keys/$KEY" | jq -er .public_key.pem > "$WORK/demo.pem"
echo "   key $KEY"

echo "2. sign a message, then retry with the same Idempotency-Key"
MSG=$(printf 'pay 10 EUR to Alice' | base64)
ORDER="order-$RANDOM$RANDOM"
SIG=$(api POST "/v1/keys/$KEY/sign" "{\"message\":\"$MSG\"}" "Idempotency-Key: $ORDER" | jq -er .signature)
AGAIN=$(api POST "/v1/keys/$KEY/sign" "{\"message\":\"$MSG\"}" "Idempotency-Key: $ORDER" | jq -er .signature)
[ "$SIG" = "$AGAIN" ] || { echo "the retry signed again" >&2; exit 1; }
echo "   signature $SIG (the retry returned the same one)"

echo "3. verify it with Keyward and with openssl"
api POST "/v1/keys/$KEY/verify" "{\"message\":\"$MSG\",\"signature\":\"$SIG\"}" | jq -e '.valid == true' > /dev/null
printf 'pay 10 EUR to Alice' > "$WORK/msg.txt"
echo "$SIG" | base64 -d > "$WORK/sig.der"
openssl dgst -sha256 -verify "$WORK/demo.pem" -signature "$WORK/sig.der" "$WORK/msg.txt"

echo "4. the key's audit records, and the hash chain"
api GET "/v1/audit?key_id=$KEY" | jq -c '.items[] | {seq, action, outcome}'
"${KEYWARD[@]}" audit verify --data-dir "$DATA"
