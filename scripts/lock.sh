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
