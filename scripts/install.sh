#!/usr/bin/env bash
# One-command install of kvid's stack into ./.venv (Python 3.11, pip and venv are all it
# needs). Idempotent: a second run only checks. Why each step: README "Install".
# --convert also installs the conversion extra (torch, torchvision, pytorchvideo: ~5 GB), which
# `kvid convert`, `--pretrained torchvision:...` and the parity tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
CONVERT=0
for arg in "$@"; do
  case "$arg" in
    --convert) CONVERT=1 ;;
    *) echo "usage: scripts/install.sh [--convert]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "kvid needs Python 3.11, found " + sys.version.split()[0]'

[ -x .venv/bin/python ] || "$PY" -m venv .venv
[ -x .venv/bin/uv ] || .venv/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
export VIRTUAL_ENV="$PWD/.venv" UV_PYTHON="$PWD/.venv/bin/python"

# 1. Every pinned version, without re-resolving: tfx 1.21.0 declares ml-metadata>=1.21 and
#    tensorflow-data-validation>=1.21, which do not exist, so a resolver cannot accept it.
#    The lock was resolved once with the overrides in scripts/overrides.txt (scripts/lock.sh).
.venv/bin/uv pip install --quiet --no-deps -r requirements.lock
# 1b. The conversion extra, pinned the same way (scripts/lock.sh says why triton is not in it).
if [ "$CONVERT" = 1 ]; then
  .venv/bin/uv pip install --quiet --no-deps -r requirements-convert.lock
fi
# 2. kvid itself, editable, against what is already there.
.venv/bin/uv pip install --quiet --no-deps --no-build-isolation -e .
# 3. TFDV 1.16.1 imports tfx_bsl.arrow.sql_util, which tfx-bsl 1.21 removed. Only TFDV's SQL
#    slicing uses it; a module in place (not a runtime patch) keeps Beam workers importing.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp kvid/_compat/tfx_bsl_sql_util.py "$site/tfx_bsl/arrow/sql_util.py"

.venv/bin/python -c 'import tensorflow, keras, apache_beam, tfx.v1, tensorflow_model_analysis, av, cv2, kvid; print("kvid stack ok: tf", tensorflow.__version__, "keras", keras.__version__, "tfx", tfx.v1.__version__ if hasattr(tfx.v1, "__version__") else "1.21.0", "beam", apache_beam.__version__)' 2>&1 | grep -v -E '^(WARNING|I0000|E0000|W0000)' | tail -1
# 4. The native training crop (kvid/data/native.py), built now rather than at the first
#    make_dataset; without a compiler tf.data falls back to TF ops, so this never fails.
.venv/bin/kvid native 2>&1 | grep -E '^(native|kvid)' || true
