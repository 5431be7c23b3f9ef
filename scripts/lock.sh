#!/usr/bin/env bash
# Regenerate requirements.lock from pyproject.toml (needs network). The lock is what
# install.sh installs, so every machine gets the same 229 versions.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
"$uv" pip compile pyproject.toml --extra test \
  --override scripts/overrides.txt \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --no-header --no-annotate --quiet -o requirements.lock
cat >> requirements.lock <<'EOT'
# Installed with --no-deps like the rest: tfx needs TFDV importable, but TFDV 1.16.1 (the
# newest) declares requirements tfx 1.21 contradicts. See README "Install".
tensorflow-data-validation==1.16.1
pyfarmhash==0.5.1
EOT
echo "wrote requirements.lock ($(grep -c '==' requirements.lock) pins)"
# The conversion extra, constrained by the main lock so both install into one venv. Triton
# is left out: torch runs on CPU without it, and importing it after TensorFlow segfaults
# (both bundle LLVM), which torchvision.ops triggers through torch._dynamo.
"$uv" pip compile scripts/convert.in -c requirements.lock \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --no-header --no-annotate --quiet \
  | grep -v -E '^triton==' > requirements-convert.lock
cat >> requirements-convert.lock <<'EOT'
# MoViNet's reference, TF Model Garden, with --no-deps like the rest: the smallest set that
# imports official.projects.movinet.modeling (its declared requirements pull in ~60 more,
# opencv, pandas, sacrebleu, tf-text ... none of which that module uses).
tf-models-official==2.20.0
gin-config==0.5.0
tensorflow-datasets==4.9.10
etils==1.15.0
toml==0.10.2
promise==2.3
immutabledict==4.3.1
pycocotools==2.0.11
EOT
echo "wrote requirements-convert.lock ($(grep -c '==' requirements-convert.lock) pins)"

