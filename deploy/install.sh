#!/usr/bin/env bash
# Installs the screening node into a virtual environment (.venv by default).
#
#   bash deploy/install.sh          # runtime: python packages only
#   bash deploy/install.sh --test   # + test extras and the Debian test peers
#
# Environment:
#   PYTHON            interpreter to build the venv from (default python3.11, else python3)
#   SCPNODE_VENV      venv location (default .venv in the project root)
#   TORCH_SPEC        torch requirement (default: torch==2.13.0, the CPU build on
#                     these machines). On a CUDA machine, for example:
#                     TORCH_SPEC="torch==2.13.0" PIP_EXTRA_INDEX_URL=<your CUDA wheel index>
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=0
for arg in "$@"; do
  case "$arg" in
    --test) with_test=1 ;;
    *) echo "install.sh: unknown argument '$arg' (use --test)" >&2; exit 2 ;;
  esac
done

python_bin=${PYTHON:-$(command -v python3.11 || command -v python3)}
venv=${SCPNODE_VENV:-.venv}
torch_spec=${TORCH_SPEC:-torch==2.13.0}
constraints=deploy/constraints.txt

say() { printf '[install] %s\n' "$*"; }

if [ ! -x "$venv/bin/python" ]; then
  say "creating virtual environment $venv with $python_bin"
  "$python_bin" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip setuptools wheel

# 1. torch first and pinned, so nothing later pulls another build.
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  say "installing $torch_spec"
  "${pip[@]}" install "$torch_spec"
fi
if [ "$torch_spec" = "torch==2.13.0" ]; then pip_c=(-c "$constraints"); else pip_c=(); fi

# 2. pyradiomics builds a C extension against the numpy that is already present
#    and its build backend needs versioneer; an isolated build would fetch an
#    unpinned numpy of its own, so we build it without isolation.
if ! "$venv/bin/python" -c "import radiomics" 2>/dev/null; then
  say "installing pyradiomics (no build isolation)"
  "${pip[@]}" install "${pip_c[@]}" numpy versioneer
  "${pip[@]}" install "${pip_c[@]}" --no-build-isolation pyradiomics
fi

# 3. the project itself (editable, so a checkout is the installed code).
extras=""
[ "$with_test" = 1 ] && extras="[test]"
say "installing the project$extras"
"${pip[@]}" install "${pip_c[@]}" -e ".$extras"

# 4. Debian test peers: Orthanc (PACS) with its DICOMweb plugin, DCMTK, dicom3tools, Chromium,
#    and node/npm to fetch the OHIF viewer.
if [ "$with_test" = 1 ]; then
  missing=()
  for tool in storescu:dcmtk Orthanc:orthanc dciodvfy:dicom3tools chromium:chromium npm:npm; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool#*:}")
  done
  [ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian test peers: ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo -n)
    "${sudo_cmd[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends \
      "${missing[@]}"
  fi
fi
# 5. The real image viewer the tests open our SEG and SR in: the prebuilt OHIF release
#    published on npm, pinned (npm checks the tarball against the registry's integrity
#    hash). Only its dist/ is kept, in .cache/ (git-ignored); tests/ohif_viewer.py serves it.
ohif_version=3.13.2
ohif_dir=.cache/ohif-$ohif_version
if [ "$with_test" = 1 ] && [ ! -f "$ohif_dir/dist/index.html" ]; then
  say "fetching the OHIF viewer @ohif/app@$ohif_version"
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  (cd "$scratch" && npm pack --silent "@ohif/app@$ohif_version" >/dev/null && tar -xzf ./*.tgz package/dist)
  [ -f "$scratch/package/dist/index.html" ] || { echo "install.sh: @ohif/app@$ohif_version has no dist/index.html" >&2; exit 1; }
  rm -rf "$ohif_dir"
  mkdir -p "$ohif_dir"
  mv "$scratch/package/dist" "$ohif_dir/dist"
fi
say "done: $("$venv/bin/scpnode" --version)"
