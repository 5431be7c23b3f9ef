#!/usr/bin/env bash
# Regenerate requirements.lock from pyproject.toml (needs network). The lock is what
# install.sh installs, so every machine gets the same 249 versions.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
"$uv" pip compile pyproject.toml --extra train --extra serve --extra tfx --extra test \
  --override scripts/overrides.txt \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --no-header --no-annotate --quiet -o requirements.lock
cat >> requirements.lock <<'EOT'
# Installed with --no-deps like the rest: tfx needs TFDV importable, but TFDV 1.16.1 (the
# newest) declares requirements tfx 1.21 contradicts. See README "Install".
tensorflow-data-validation==1.16.1
pyfarmhash==0.5.1
# The S3 round trip's test (tests/ingest/test_s3.py), --no-deps like the rest: boto3 for Beam's
# S3 filesystem (the "s3" extra) and moto's S3 server on loopback. moto[server] declares ~30
# more (cfn-lint, sympy, aws-xray-sdk...) for services other than S3, none imported by its S3
# server (the test imports nothing else).
boto3==1.44.8
botocore==1.44.8
s3transfer==0.19.3
jmespath==1.1.0
moto==5.2.5
xmltodict==1.0.4
responses==0.26.3
py-partiql-parser==0.6.3
flask==3.1.3
flask-cors==6.0.5
blinker==1.9.0
itsdangerous==2.2.0
# Beam's stager builds --setup_file pyproject.toml with `python -m build` (tests/ingest/test_workers.py).
build==1.6.1
pyproject-hooks==1.3.3
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

