"""`kvid train` on 2 worker processes on loopback (MultiWorkerMirroredStrategy from TF_CONFIG,
the same command on each): the chief's run folder is complete, the others leave nothing, the
losses are a 1-worker run's with the same global batch, and a killed job resumes."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from kvid.train.multiworker import Cluster, cluster

KVID = os.path.join(os.path.dirname(sys.executable), "kvid")
# c3d (tiny) has no batch norm: per-replica batch statistics would differ from one worker's.
TRAIN = ["train", "--model", "c3d", "--preset", "tiny", "--batch-size", "4", "--no-flip",
         "--crop", "center"]


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_workers(data, out, epochs, *extra):
    ports = free_ports(2)
    procs = []
    for i in range(2):
        spec = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                "task": {"type": "worker", "index": i}}
        procs.append(subprocess.Popen(
            [KVID, *TRAIN, "--data", data, "--output", out, "--epochs", str(epochs), *extra],
            env={**os.environ, "TF_CONFIG": json.dumps(spec)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs, timeout=600):
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]


def rows(run):
    with open(os.path.join(run, "train_log.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_tf_config_gives_each_task_its_place():
    spec = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
            "task": {"type": "worker", "index": 1}}
    assert cluster({"TF_CONFIG": json.dumps(spec)}) == Cluster(3, 2, False)
    spec["task"] = {"type": "chief", "index": 0}
    assert cluster({"TF_CONFIG": json.dumps(spec)}) == Cluster(3, 0, True)
    one = {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}
    assert cluster({"TF_CONFIG": json.dumps(one)}) is None and cluster({}) is None
    with pytest.raises(ValueError, match="not a TensorFlow cluster spec"):
        cluster({"TF_CONFIG": "{not json"})
    spec["task"] = {"type": "worker", "index": 5}
    with pytest.raises(ValueError, match="not in its cluster"):
        cluster({"TF_CONFIG": json.dumps(spec)})


def test_two_workers_train_as_one_with_the_same_global_batch(tiny_data, tmp_path):
    single = str(tmp_path / "single")
    done = subprocess.run([KVID, *TRAIN, "--data", tiny_data["data"], "--output", single,
                           "--epochs", "2"], capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if k != "TF_CONFIG"})
    assert done.returncode == 0, done.stderr[-3000:]
    multi = str(tmp_path / "multi")
    chief, other = finish(start_workers(tiny_data["data"], multi, 2))
    assert chief["output"] == other["output"] == multi

    for name in ("config.json", "input.json", "best.keras", "last.keras", "train_log.csv",
                 "training_curves.png", "sample.tfrecord"):
        assert os.path.isfile(os.path.join(multi, name)), name
    assert os.listdir(os.path.join(multi, "tensorboard"))
    assert not os.path.exists(os.path.join(multi, "backup"))  # finished: nothing to resume
    one, two = rows(single), rows(multi)
    assert [r["epoch"] for r in two] == ["0", "1"]
    for a, b in zip(one, two):  # the same batches, the gradients all-reduced: float noise
        for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
            assert abs(float(a[key]) - float(b[key])) <= 1e-4, (key, a, b)
    # both workers computed the same epoch numbers (the all-reduced sums)
    assert chief["final"] == other["final"]

    from kvid.train.runs import load_run
    assert load_run(multi).model.count_params() > 0  # the chief's models load


def test_a_killed_worker_then_restarting_both_resumes_from_the_last_epoch(tiny_data, tmp_path):
    out = str(tmp_path / "run")
    procs = start_workers(tiny_data["data"], out, 4)
    log, deadline = os.path.join(out, "train_log.csv"), time.time() + 600
    while time.time() < deadline and all(p.poll() is None for p in procs):
        if os.path.exists(log) and len(open(log).read().strip().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert all(p.poll() is None for p in procs), "training ended before it could be killed"
    procs[1].send_signal(signal.SIGKILL)  # a worker dies; the chief cannot go on alone
    try:
        procs[0].wait(timeout=90)
    except subprocess.TimeoutExpired:
        procs[0].kill()
    for p in procs:
        p.communicate()
    assert os.listdir(os.path.join(out, "backup")), "no checkpoint survived the kill"

    kept = len(rows(out))
    procs = start_workers(tiny_data["data"], out, 4, "--resume")
    chief_out = procs[0].communicate(timeout=600)[0]
    finish(procs[1:])
    assert procs[0].returncode == 0
    assert "resumed after epoch" in chief_out and "Epoch 1/4" not in chief_out
    assert "Epoch 4/4" in chief_out
    resumed_at = int(chief_out.split("resumed after epoch ")[1].split()[0])
    assert resumed_at in (kept - 1, kept)  # the last checkpoint: its row came first
    assert [r["epoch"] for r in rows(out)] == ["0", "1", "2", "3"]  # continued, no repeats
    assert not os.path.exists(os.path.join(out, "backup"))
    assert os.path.isfile(os.path.join(out, "last.keras"))


def test_xla_flag_reaches_compile_and_bad_values_are_refused(tiny_data, tmp_path):
    from kvid.train.trainer import TrainConfig, train

    with pytest.raises(ValueError, match="xla must be one of"):
        TrainConfig(data_dir=tiny_data["data"], output_dir=str(tmp_path / "x"), xla="yes")
    result = train(TrainConfig(data_dir=tiny_data["data"], output_dir=str(tmp_path / "run"),
                               model="c3d", preset="tiny", epochs=1, batch_size=4,
                               steps_per_epoch=2, xla="on", verbose=0))
    assert result.model.jit_compile is True and len(result.history["loss"]) == 1


def test_the_tfx_trainer_run_fn_trains_on_two_workers_and_only_the_chief_exports(
        tiny_data, tmp_path):
    """The Trainer component's executor calls the module file's run_fn(fn_args) in each
    worker's process; fn_args is TFX's plain attribute holder, here a SimpleNamespace."""
    ports, procs = free_ports(2), []
    for i in range(2):
        spec = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                "task": {"type": "worker", "index": i}}
        script = (
            "import sys, types; import kvid; from kvid.tfx.trainer_module import run_fn; "
            "run_fn(types.SimpleNamespace(train_files=[sys.argv[1] + '/Split-train/*'], "
            "custom_config={'model': 'c3d', 'preset': 'tiny', 'epochs': 1, 'batch_size': 4, "
            "'flip': False, 'crop': 'center'}, model_run_dir=sys.argv[2], "
            "serving_model_dir=sys.argv[3]))")
        procs.append(subprocess.Popen(
            [sys.executable, "-c", script, tiny_data["data"], str(tmp_path / f"run{i}"),
             str(tmp_path / f"serving{i}")], env={**os.environ, "TF_CONFIG": json.dumps(spec)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    assert os.path.isfile(tmp_path / "serving0" / "saved_model.pb")
    assert os.path.isfile(tmp_path / "run0" / "best.keras")
    assert not os.path.exists(tmp_path / "serving1") and not os.path.exists(tmp_path / "run1")
