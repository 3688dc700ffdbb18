#!/usr/bin/env bash
# The seeds' command lines (shared/seeds 001, 002, 003), run as written against a real cloisterd:
# only the host and port differ. seed_flows_test runs one section per test case.
#
#   seed_flows.sh SECTION CLOISTERD CLOISTER_NODE WORKDIR
#
# SECTION: root  (003: curl with the Basic root token)
#          tap   (002/003: a key made by openssl, the openssl pkeyutl hand/shake flow, Bearer)
#          mtls  (001: the openssl CA recipes, curl with client certificates -> 200, without ->
#                 401; openssl ca -revoke and -gencrl: refused with no restart; join with certs)
# Prints what it checks; exits non-zero at the first check that fails.
set -euo pipefail

SECTION=${1:?section}
CLOISTERD=$(realpath "${2:?cloisterd}")
CLOISTER_NODE=$(realpath "${3:?cloister-node}")
WORK=${4:?workdir}
mkdir -p "$WORK" && cd "$WORK"

PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; true; }
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
expect() {  # expect NAME ACTUAL WANTED
  [ "$2" == "$3" ] || fail "$1: got [$2], want [$3]"
  echo "ok: $1"
}

# start ENV...: cloisterd on ephemeral loopback ports; sets CONTROLLER and REGISTRY (host:port).
start() {
  rm -f ready
  env "$@" "$CLOISTERD" --data ./data --listen-addr 127.0.0.1:0 \
    --registry-listen-address 127.0.0.1:0 --ready-file ready >cloisterd.log 2>&1 &
  PID=$!
  for _ in $(seq 100); do [ -s ready ] && break; sleep 0.1; done
  [ -s ready ] || { cat cloisterd.log >&2; fail "cloisterd did not start"; }
  CONTROLLER=127.0.0.1:$(sed -n 's/^controller=//p' ready)
  REGISTRY=127.0.0.1:$(sed -n 's/^registry=//p' ready)
}

section_root() {
  start ANKA_ENABLE_AUTH=true ANKA_ROOT_TOKEN=1111111111
  # 003: curl -H "Authorization: Basic $(echo -ne "root:1111111111" | base64)" .../registry/status
  out=$(curl -s -H "Authorization: Basic $(echo -ne "root:1111111111" | base64)" \
    http://$REGISTRY/registry/status)
  expect "root token on the registry" "$(jq -r .body.status <<<"$out")" "Running"
  out=$(curl -s -H "Authorization: Basic $(echo -ne "root:1111111111" | base64)" \
    http://$CONTROLLER/api/v1/status)
  expect "root token on the controller" "$(jq -r .body.status <<<"$out")" "Running"
  expect "no credentials" "$(curl -s http://$CONTROLLER/api/v1/status)" \
    '{"status":"FAIL","message":"Authentication Required"}'
  expect "wrong token" "$(curl -s -o /dev/null -w '%{http_code}' \
    -H "Authorization: Basic $(echo -ne "root:2222222222" | base64)" \
    http://$CONTROLLER/api/v1/status)" "401"
}

section_tap() {
  start ANKA_ENABLE_AUTH=true ANKA_ROOT_TOKEN=1111111111 ANKA_ENABLE_API_KEYS=true
  # A key pair made by openssl: PEM PKCS#1 private key, PKIX DER public key (seed 002).
  openssl genrsa -traditional -out nathan-key.pem 2048 2>/dev/null
  openssl rsa -in nathan-key.pem -pubout -out nathan-pub.pem 2>/dev/null
  public=$(openssl rsa -in nathan-key.pem -pubout -outform DER 2>/dev/null | base64 -w0)
  out=$(curl -s -u root:1111111111 http://$CONTROLLER/api/v1/apikey \
    -d "{\"id\":\"nathan\",\"ttl\":3600,\"groups\":[\"ci\"],\"publicKey\":\"$public\"}")
  expect "key created" "$(jq -r .status <<<"$out")" "OK"
  ls nathan-*pem >/dev/null

  # The seed's lines, verbatim but for the address.
  echo -n $(curl -s http://$CONTROLLER/tap/v1/hand -d '{"id": "nathan"}') | base64 -d > to_decrypt
  openssl pkeyutl -decrypt -inkey nathan-key.pem -in to_decrypt -out decrypted -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256
  cat decrypted; echo
  curl -s http://$CONTROLLER/tap/v1/shake -d "{\"id\": \"nathan\", \"secret\": \"$(cat decrypted)\" }" > shake.json
  expect "shake answers the key id" "$(jq -r .id shake.json)" "nathan"
  expect "shake answers a session" "$(jq -r .data.userName shake.json)" "nathan"
  bearer=$(jq -r '.data' shake.json | base64)  # Pretty-printed JSON, wrapped base64, as in 002.
  bearer=$(tr -d '\n' <<<"$bearer")
  expect "no credentials" "$(curl -s http://$CONTROLLER/api/v1/status)" \
    '{"status":"FAIL","message":"Authentication Required"}'
  out=$(curl -sH "Authorization: Bearer $bearer" http://$CONTROLLER/api/v1/status)
  expect "Bearer on the controller" "$(jq -r .body.status <<<"$out")" "Running"
  out=$(curl -sH "Authorization: Bearer $bearer" http://$REGISTRY/registry/status)
  expect "Bearer on the registry" "$(jq -r .body.status <<<"$out")" "Running"
  # The secret is single-use.
  expect "replayed secret" "$(curl -s -o /dev/null -w '%{http_code}' \
    http://$CONTROLLER/tap/v1/shake \
    -d "{\"id\": \"nathan\", \"secret\": \"$(cat decrypted)\" }")" "401"

  # 002: join a node with the key (the group must exist first).
  out=$(curl -s -u root:1111111111 http://$CONTROLLER/api/v1/group \
    -d '{"name":"gitlab-test-group-env"}')
  expect "group created" "$(jq -r .status <<<"$out")" "OK"
  ANKA_API_KEY_STRING=$(cat nathan-key.pem)
  "$CLOISTER_NODE" join http://$CONTROLLER --groups "gitlab-test-group-env" --reserve-space 10GB --api-key-id "nathan" --api-key-string "$ANKA_API_KEY_STRING" \
    --data "$PWD/node" --name seed-node >join.log 2>&1 &
  AGENT=$!
  wait_active "-u root:1111111111" http
  kill "$AGENT" 2>/dev/null; wait "$AGENT" 2>/dev/null || true
  [ "$state" == "Active" ] || { cat join.log >&2; fail "join with the API key: state [$state]"; }
  grep -q "nathan-key\|BEGIN RSA" join.log && fail "the agent logged its key"
  echo "ok: cloister-node join --groups --reserve-space 10GB --api-key-id --api-key-string"
}

# wait_active CURL_AUTH_ARGS SCHEME: sets state to the first node's state once Active (or the
# last seen after 10 s).
wait_active() {
  state=""
  for _ in $(seq 100); do
    state=$(curl --insecure -s $1 $2://$CONTROLLER/api/v1/node | jq -r '.body[0].state // empty')
    [ "$state" == "Active" ] && break
    sleep 0.1
  done
}

# The CA and certificate recipes of seed 001, with the address filled in.
make_certs() {
  CONTROLLER_ADDRESS=127.0.0.1
  openssl req -new -nodes -x509 -days 365 -keyout anka-ca-key.pem -out anka-ca-crt.pem \
    -subj "/O=MyGroup/OU=MyOrgUnit/CN=MyUser" 2>/dev/null
  openssl genrsa -out anka-controller-key.pem 4096 2>/dev/null
  openssl req -new -nodes -sha256 -key anka-controller-key.pem -out anka-controller-csr.pem -subj "/O=MyGroup/OU=MyOrgUnit/CN=MyUser" \
    -reqexts SAN -extensions SAN \
    -config <(cat /etc/ssl/openssl.cnf <(printf "[SAN]\nextendedKeyUsage = serverAuth\nsubjectAltName=IP:$CONTROLLER_ADDRESS"))
  openssl x509 -req -days 365 -sha256 -in anka-controller-csr.pem -CA anka-ca-crt.pem -CAkey anka-ca-key.pem -CAcreateserial \
    -out anka-controller-crt.pem -extfile <(echo subjectAltName = IP:$CONTROLLER_ADDRESS) 2>/dev/null
  NODE_NAME=Veertu.local
  openssl genrsa -out node-$NODE_NAME-key.pem 4096 2>/dev/null
  openssl req -new -sha256 -key node-$NODE_NAME-key.pem -out node-$NODE_NAME-csr.pem \
    -subj "/O=DevOps/O=iOS Dev/CN=node-$NODE_NAME"
  openssl x509 -req -days 365 -sha256 -in node-$NODE_NAME-csr.pem -CA anka-ca-crt.pem -CAkey anka-ca-key.pem \
    -CAcreateserial -out node-$NODE_NAME-crt.pem 2>/dev/null
  # The revocation database and the first CRL (seed 001, "Certificate Revocation").
  cat > openssl.cnf <<'EOF'
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = .
certs = $dir
crl_dir = $dir
database = $dir/index.txt
new_certs_dir = $dir
certificate = $dir/anka-ca-crt.pem
serial = $dir/serial
crlnumber = $dir/crlnumber
crl = $dir/crl.pem
private_key = $dir/anka-ca-key.pem
RANDFILE    = $dir/.rand
x509_extensions = usr_cert
name_opt = ca_default
cert_opt = ca_default
default_days    = 365
default_crl_days= 30
default_md    = sha256
preserve    = no
policy = policy_match
[ policy_match ]
organizationName = optional
commonName = supplied
[ usr_cert ]
basicConstraints = CA:FALSE
EOF
  touch index.txt
  echo "01" > crlnumber
  openssl ca -gencrl \
    -config openssl.cnf \
    -keyfile anka-ca-key.pem \
    -cert anka-ca-crt.pem \
    -out crl.pem \
    -crldays 365 2>/dev/null
}

section_mtls() {
  make_certs
  start ANKA_USE_HTTPS=true ANKA_SERVER_CERT=anka-controller-crt.pem \
    ANKA_SERVER_KEY=anka-controller-key.pem ANKA_ENABLE_AUTH=true ANKA_ROOT_TOKEN=1111111111 \
    ANKA_CA_CERT=anka-ca-crt.pem ANKA_CRL=crl.pem
  NODE_NAME=Veertu.local
  # Without a certificate: 401. With the node's: 200 (seed 001's two curl lines).
  expect "no certificate" "$(curl --insecure -s -o /dev/null -w '%{http_code}' \
    https://$CONTROLLER/api/v1/status)" "401"
  out=$(curl --insecure -s https://$CONTROLLER/api/v1/status --cert node-$NODE_NAME-crt.pem --key node-$NODE_NAME-key.pem)
  expect "node certificate" "$(jq -r .body.status <<<"$out")" "Running"
  out=$(curl --cacert anka-ca-crt.pem -s https://$REGISTRY/registry/status \
    --cert node-$NODE_NAME-crt.pem --key node-$NODE_NAME-key.pem)
  expect "node certificate on the registry" "$(jq -r .body.status <<<"$out")" "Running"

  # join with the certificates (seed 001): the agent joins and keeps running (as anka_agent).
  "$CLOISTER_NODE" join https://$CONTROLLER --skip-tls-verification \
    --cert "$PWD/node-$NODE_NAME-crt.pem" --cert-key "$PWD/node-$NODE_NAME-key.pem" \
    --cacert "$PWD/anka-ca-crt.pem" --data "$PWD/node" --name seed-node >join.log 2>&1 &
  AGENT=$!
  wait_active "--cert node-$NODE_NAME-crt.pem --key node-$NODE_NAME-key.pem" https
  kill "$AGENT" 2>/dev/null; wait "$AGENT" 2>/dev/null || true
  [ "$state" == "Active" ] || { cat join.log >&2; fail "join with certificates: state [$state]"; }
  echo "ok: cloister-node join with --cert --cert-key --cacert --skip-tls-verification"
  # The node's events name it by its certificate: actor Certificate, CN and every O=.

  # Revoke with the seed's openssl ca lines and regenerate the CRL: refused, with no restart.
  openssl ca -config openssl.cnf \
    -revoke node-$NODE_NAME-crt.pem \
    -keyfile anka-ca-key.pem \
    -cert anka-ca-crt.pem 2>/dev/null
  openssl ca -gencrl \
    -config openssl.cnf \
    -keyfile anka-ca-key.pem \
    -cert anka-ca-crt.pem \
    -out crl.pem \
    -crldays 365 2>/dev/null
  if openssl verify -crl_check -CAfile anka-ca-crt.pem -CRLfile crl.pem node-$NODE_NAME-crt.pem >/dev/null 2>&1; then
    fail "openssl still accepts the revoked certificate"
  fi
  code=""
  for _ in $(seq 50); do
    code=$(curl --insecure -s -o /dev/null -w '%{http_code}' https://$CONTROLLER/api/v1/status \
      --cert node-$NODE_NAME-crt.pem --key node-$NODE_NAME-key.pem)
    [ "$code" == "401" ] && break
    sleep 0.1
  done
  expect "revoked certificate, no restart" "$code" "401"
  kill -0 "$PID" || fail "cloisterd exited"
}

"section_$SECTION"
echo "seed flows: $SECTION passed"
