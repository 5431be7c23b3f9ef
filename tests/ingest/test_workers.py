"""Workers get kvid through Beam's standard mechanism: ``--setup_file pyproject.toml``, built
by Beam's own stager (what Dataflow and the portable runners stage), into a package a worker's
pip can install: the core dependencies are the ingest's, and they resolve."""

import os
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UV = os.path.join(os.path.dirname(sys.executable), "uv")


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.stager import Stager

    build = str(tmp_path_factory.mktemp("staging"))
    options = PipelineOptions([f"--setup_file={ROOT}/pyproject.toml"])
    artifacts = Stager.create_job_resources(options, build)
    staged_as = {a.role_payload.decode(errors="replace")[2:]: a for a in artifacts}
    assert "workflow.tar.gz" in staged_as  # the name a Beam worker installs at start-up
    [sdist] = [os.path.join(build, n) for n in os.listdir(build) if n.endswith(".tar.gz")]
    return sdist


def test_the_staged_package_holds_the_ingest_and_its_data(staged):
    with tarfile.open(staged) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        info = tar.extractfile(next(n for n in tar.getnames() if n.endswith("/PKG-INFO"))) \
            .read().decode()
    for module in ("kvid/files.py", "kvid/ingest/transforms.py", "kvid/ingest/runner.py",
                   "kvid/video/decode.py", "kvid/schema.py", "kvid/data/crop_resize.cc",
                   "kvid/serving/page.html", "kvid/pretrained/labels/kinetics400.txt"):
        assert module in names, module
    core = sorted(line.split(": ", 1)[1] for line in info.splitlines()
                  if line.startswith("Requires-Dist:") and "extra ==" not in line)
    assert core == ["apache-beam==2.77.0", "av==18.1.0", "numpy",
                    "opencv-python-headless==5.0.0.93", "tqdm"]


@pytest.mark.skipif(not os.path.exists(UV), reason="uv comes with scripts/install.sh")
def test_a_workers_pip_resolves_the_staged_package_offline(staged):
    """Against an environment holding Beam and the decoders (as a Beam SDK image plus
    PyPI would), installing the package needs nothing else; before the core was cut down
    to the ingest's, tfx's contradicting pins made it unresolvable."""
    env = {**os.environ, "VIRTUAL_ENV": os.path.dirname(os.path.dirname(sys.executable)),
           "UV_PYTHON": sys.executable}
    done = subprocess.run([UV, "pip", "install", "--dry-run", "--offline",
                           "--no-build-isolation", staged],
                          capture_output=True, text=True, env=env, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Would install 1 package" in out or "Would make no changes" in out, out
