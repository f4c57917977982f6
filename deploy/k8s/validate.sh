#!/usr/bin/env bash
# Validates the manifests that kustomization.yaml lists against the real Kubernetes schemas
# (strict: unknown fields are errors), for the oldest version with native gRPC probes (1.27)
# and the newest the validator ships. kubernetes-validate carries the schemas, so this works
# offline once its pinned requirements are installed in a venv (made here, cached).
set -euo pipefail
cd "$(dirname "$0")"
venv=${XDG_CACHE_HOME:-$HOME/.cache}/verdict-deploy/k8s-venv
if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1 ||
    ! cmp -s requirements.txt "$venv/requirements.txt"; then
    echo "k8s-validate: making a venv with requirements.txt in $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r requirements.txt
    cp requirements.txt "$venv/requirements.txt"
fi
mapfile -t files < <("$venv/bin/python" -c '
import yaml
for f in yaml.safe_load(open("kustomization.yaml"))["resources"]:
    print(f)')
for version in 1.27.0 1.37.0; do
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${files[@]}"
    echo "k8s-validate: ${files[*]} valid for Kubernetes $version (strict)"
done
