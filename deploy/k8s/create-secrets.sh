#!/usr/bin/env bash
# Generate Kiln's cluster secrets once, before the first `kubectl apply -k deploy/k8s/overlays/...`: nothing
# secret is committed. Existing Secrets are left as they are (PostgreSQL keeps the password it was initialised
# with). Usage: deploy/k8s/create-secrets.sh [NAMESPACE]   (default kiln; needs kubectl and openssl)
set -euo pipefail
namespace="${1:-kiln}"
here="$(cd "$(dirname "$0")" && pwd)"

if ! kubectl get namespace "$namespace" >/dev/null 2>&1; then
  if [ "$namespace" = kiln ]; then
    kubectl apply -f "$here/base/namespace.yaml"  # with its Pod Security labels
  else
    kubectl create namespace "$namespace"
  fi
fi

create() {  # create NAME KEY VALUE, unless NAME exists
  if kubectl -n "$namespace" get secret "$1" >/dev/null 2>&1; then
    echo "secret $1 exists in $namespace: kept"
  else
    kubectl -n "$namespace" create secret generic "$1" --from-literal="$2=$3" >/dev/null
    echo "secret $1 created in $namespace"
  fi
}

create kiln-prefect-db POSTGRES_PASSWORD "$(openssl rand -hex 24)"
# HTTP basic auth for the Prefect API: the server requires it, the worker and retrain Jobs send it.
create kiln-prefect-auth auth-string "kiln:$(openssl rand -hex 24)"
echo "for kiln schedule through a port-forward:"
echo "  export PREFECT_API_AUTH_STRING=\"\$(kubectl -n $namespace get secret kiln-prefect-auth -o jsonpath='{.data.auth-string}' | base64 -d)\""
