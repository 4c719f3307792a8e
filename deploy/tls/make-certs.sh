#!/usr/bin/env bash
# Makes a throw-away set of credentials for a metatrain cluster with openssl: a CA, the
# coordinator's server certificate, a client certificate for workers and one for metactl,
# job API tokens (admin and read) and a worker join token (docs/security.md).
#
#   deploy/tls/make-certs.sh OUT_DIR [--force] [--for-containers] [--san DNS:name|IP:addr]...
#
# OUT_DIR/ (mode 0700):
#   ca.crt ca.key                 the CA (keep ca.key to sign more; it is not mounted anywhere)
#   coordinator/                  for the coordinator: --tls_cert tls.crt --tls_key tls.key
#     tls.crt tls.key ca.crt      --tls_client_ca ca.crt --tokens_file tokens
#     tokens worker-tokens        --worker_token_file worker-tokens
#   worker/                       for workers: --tls_ca ca.crt --tls_cert tls.crt --tls_key tls.key
#     tls.crt tls.key ca.crt token  --token_file token
#   client/                       for metactl: --tls_ca ca.crt --token_file admin.token
#     ca.crt tls.crt tls.key        (or read.token; tls.crt/tls.key for mutual TLS)
#     admin.token read.token
# The server certificate names localhost, 127.0.0.1, ::1, and the service names of the
# compose file (coordinator) and the Kubernetes manifests (coordinator.metatrain.svc...);
# --san adds more. An existing complete set is kept unless --force. --for-containers makes
# the role folders and their files readable by any user (the images run as uid 10001),
# leaving OUT_DIR itself 0700. Each role folder is what one Kubernetes Secret holds:
# deploy/k8s/create-secrets.sh OUT_DIR.
set -euo pipefail

usage() { echo "usage: make-certs.sh OUT_DIR [--force] [--for-containers] [--san DNS:name|IP:addr]..." >&2; exit 2; }
[[ $# -ge 1 ]] || usage
OUT=$1
shift
force=0 containers=0 sans=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --force) force=1 ;;
    --for-containers) containers=1 ;;
    --san) [[ $# -ge 2 ]] || usage; sans+=("$2"); shift ;;
    *) usage ;;
  esac
  shift
done
command -v openssl >/dev/null || { echo "make-certs: openssl is missing (apt-get install openssl)" >&2; exit 1; }

files=(ca.crt ca.key coordinator/tls.crt coordinator/tls.key coordinator/ca.crt coordinator/tokens
  coordinator/worker-tokens worker/tls.crt worker/tls.key worker/ca.crt worker/token
  client/ca.crt client/tls.crt client/tls.key client/admin.token client/read.token)
# Role folders readable by the containers' user; OUT itself stays 0700.
share() {
  if [[ $containers == 1 ]]; then
    chmod 0755 "$OUT/coordinator" "$OUT/worker" "$OUT/client"
    chmod 0644 "$OUT"/coordinator/* "$OUT"/worker/* "$OUT"/client/*
  fi
}
complete=1
for f in "${files[@]}"; do [[ -s "$OUT/$f" ]] || complete=0; done
if [[ $complete == 1 && $force == 0 ]]; then
  share
  echo "make-certs: $OUT already holds a complete set (--force makes a new one)" >&2
  exit 0
fi

umask 077
mkdir -p "$OUT"
chmod 0700 "$OUT"
rm -rf "$OUT/coordinator" "$OUT/worker" "$OUT/client"
mkdir -p "$OUT/coordinator" "$OUT/worker" "$OUT/client"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
days=${METATRAIN_CERT_DAYS:-365}

# P-256 keys: generated in milliseconds, supported by every TLS stack gRPC uses.
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key "$OUT/ca.key"
openssl req -x509 -new -key "$OUT/ca.key" -sha256 -days "$days" -subj "/CN=metatrain throw-away CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$OUT/ca.crt" 2>/dev/null

# issue NAME CN EXTENDED_USAGE SAN: a key and a certificate signed by the CA.
issue() {
  local dir=$1 cn=$2 usage=$3 san=$4
  key "$dir/tls.key"
  openssl req -new -key "$dir/tls.key" -subj "/CN=$cn" -out "$work/req.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [[ -n $san ]] && echo "subjectAltName=$san"
  } >"$work/ext.cnf"
  openssl x509 -req -in "$work/req.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" -CAcreateserial \
    -CAserial "$work/ca.srl" -days "$days" -sha256 -extfile "$work/ext.cnf" -out "$dir/tls.crt" 2>/dev/null
}

server_san="DNS:localhost,DNS:coordinator,DNS:coordinator.metatrain,DNS:coordinator.metatrain.svc"
server_san+=",DNS:coordinator.metatrain.svc.cluster.local,IP:127.0.0.1,IP:::1"
for s in "${sans[@]}"; do server_san+=",$s"; done
issue "$OUT/coordinator" "metatrain-coordinator" serverAuth "$server_san"
issue "$OUT/worker" "metatrain-worker" clientAuth "DNS:metatrain-worker"
issue "$OUT/client" "metactl" clientAuth "DNS:metactl"
for dir in coordinator worker client; do cp "$OUT/ca.crt" "$OUT/$dir/ca.crt"; done

token() { openssl rand -hex 32; }
admin=$(token) read=$(token) join=$(token)
printf '%s\n' "$admin" >"$OUT/client/admin.token"
printf '%s\n' "$read" >"$OUT/client/read.token"
printf '%s\n' "$join" >"$OUT/worker/token"
printf '# worker join tokens, one per line (metatrain-coordinator --worker_token_file)\n%s\n' "$join" \
  >"$OUT/coordinator/worker-tokens"
printf '# <role> <token>: admin submits and cancels, read gets, lists, watches and fetches\nadmin %s\nread %s\n' \
  "$admin" "$read" >"$OUT/coordinator/tokens"

share
echo "make-certs: wrote a CA, certificates and tokens to $OUT" >&2
