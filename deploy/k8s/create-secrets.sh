#!/usr/bin/env bash
# Creates (or replaces) the two Secrets the metatrain pods mount, from a folder laid out as
# deploy/tls/make-certs.sh writes it (docs/security.md):
#   metatrain-coordinator-secrets  <- DIR/coordinator/ (tls.crt tls.key ca.crt tokens worker-tokens)
#   metatrain-worker-secrets       <- DIR/worker/      (tls.crt tls.key ca.crt token)
# Running it again after editing the files rotates them: the kubelet updates the mounted
# files within about a minute and the coordinator re-reads its token files by itself.
#
#   deploy/k8s/create-secrets.sh DIR [NAMESPACE]     # NAMESPACE defaults to metatrain
set -euo pipefail
dir=${1:?usage: create-secrets.sh DIR [NAMESPACE]}
namespace=${2:-metatrain}
for role in coordinator worker; do
  [[ -d $dir/$role ]] || { echo "create-secrets: $dir/$role is missing (deploy/tls/make-certs.sh $dir)" >&2; exit 2; }
done
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
for role in coordinator worker; do
  kubectl -n "$namespace" create secret generic "metatrain-$role-secrets" --from-file="$dir/$role" \
    --dry-run=client -o yaml | kubectl apply -f -
done
