"""Training on several hosts: ``tf.distribute.MultiWorkerMirroredStrategy`` when ``TF_CONFIG``
names more than one task (the TF convention: the same command on every worker).

Keras 3.15's ``model.fit`` cannot run under that strategy (keras-team/keras#20585: its
symbolic build and its reduction of the step's metrics fail on ``PerReplica`` values), so
:func:`fit` is the loop ``fit`` would run: the loss of each replica's share over the global
batch, Keras's own optimizer applying the all-reduced gradients, the epoch's loss and
accuracy summed over all workers. The chief alone writes the run folder (log, TensorBoard,
best model); every worker checkpoints each epoch, the others into a private folder, as TF's
multi-worker checkpointing asks, and a job started again with ``--resume`` restores the
chief's ``backup/`` on every worker (on a cluster, the run folder is shared storage).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import tempfile


@dataclasses.dataclass(frozen=True)
class Cluster:
    num_workers: int
    index: int  # this task's place among all tasks, the chief first
    chief: bool


def cluster(environ=os.environ) -> Cluster | None:
    """This task's place when ``TF_CONFIG`` names several tasks; None otherwise."""
    raw = environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        spec = json.loads(raw)
        tasks = spec["cluster"]
        kind, index = spec["task"]["type"], int(spec["task"]["index"])
        chiefs, workers = list(tasks.get("chief", [])), list(tasks.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"TF_CONFIG is not a TensorFlow cluster spec ({e!r}); expected "
                         '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": '
                         '"worker", "index": 0}}') from None
    total = len(chiefs) + len(workers)
    if total < 2:
        return None
    if kind not in ("chief", "worker") or index < 0 or \
            index >= len(chiefs if kind == "chief" else workers):
        raise ValueError(f"TF_CONFIG's task {kind}:{index} is not in its cluster "
                         f"({len(chiefs)} chief, {len(workers)} workers)")
    place = index if kind == "chief" else len(chiefs) + index
    return Cluster(num_workers=total, index=place, chief=place == 0)


def strategy():
    """Created before TensorFlow runs any op: collectives are configured at start-up."""
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def private_dir(place: Cluster) -> str:
    """Where a non-chief worker writes what the chief writes to the run folder."""
    return tempfile.mkdtemp(prefix=f"kvid-worker{place.index}-")


def shard_policy(num_files: int, num_workers: int):
    """FILE (each worker reads its own shards) when there are enough files, else DATA (each
    reads all and keeps every N-th batch: the same global batches as one worker)."""
    import tensorflow as tf

    policy = tf.data.experimental.AutoShardPolicy
    return policy.FILE if num_files >= num_workers else policy.DATA


def _targets(y, num_classes: int):
    import tensorflow as tf

    if y.dtype.is_floating and y.shape[-1] == num_classes:  # one-hot or mixed labels
        return tf.argmax(tf.reshape(y, [-1, num_classes]), -1, output_type=tf.int32)
    return tf.cast(tf.reshape(y, [-1]), tf.int32)


def fit(model, train_ds, val_ds, *, strategy, place: Cluster, epochs: int,
        steps_per_epoch: int, backup: str, shared_backup: str, resume: bool,
        csv_log: str, tensorboard: str, best: str, monitor: str,
        callbacks=(), verbose: int = 1, jit_compile: bool = False) -> tuple[dict, int]:
    """Trains ``model`` (built and compiled under ``strategy``) for ``epochs``; returns
    (history, the first epoch run here). ``train_ds`` yields global batches and repeats."""
    import keras
    import tensorflow as tf

    optimizer, loss_fn = model.optimizer, model.loss
    num_classes = int(model.outputs[0].shape[-1])
    replicas = strategy.num_replicas_in_sync
    k = min(5, num_classes)
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def sums(y, logits):
        """Per-example losses, and [loss, top-1 hits, top-k hits, examples] summed (per-step
        models: every step counts, as Keras averages their loss)."""
        logits = tf.cast(logits, tf.float32)
        per = tf.reshape(loss_fn.call(y, logits), [-1])
        flat = tf.reshape(logits, [-1, num_classes])
        target = _targets(y, num_classes)
        top1 = tf.cast(tf.equal(tf.argmax(flat, -1, output_type=tf.int32), target), tf.float32)
        topk = tf.cast(tf.math.in_top_k(target, flat, k), tf.float32)
        return per, tf.stack([tf.reduce_sum(per), tf.reduce_sum(top1), tf.reduce_sum(topk),
                              tf.cast(tf.size(per), tf.float32)])

    def gradients(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            per, totals = sums(y, logits)
            loss = tf.reduce_sum(per) / (tf.cast(tf.size(per), tf.float32) * replicas)
            if model.losses:
                loss += tf.add_n(model.losses) / replicas
            grad_of = optimizer.scale_loss(loss) if scaled else loss
        return tape.gradient(grad_of, model.trainable_variables), totals

    if jit_compile:  # XLA for the model's forward and backward pass; the all-reduce is not
        gradients = tf.function(gradients, jit_compile=True)

    def replica_step(x, y):
        grads, totals = gradients(x, y)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return totals

    @tf.function
    def train_steps(iterator, steps):
        totals = tf.zeros([4])
        for _ in tf.range(steps):
            x, y = next(iterator)
            totals += strategy.reduce("SUM", strategy.run(replica_step, args=(x, y)),
                                      axis=None)
        return totals

    @tf.function
    def eval_step(x, y):
        return sums(y, model(x, training=False))[1]

    def logs_of(totals, prefix=""):
        loss, top1, topk, count = (float(v) for v in totals)
        count = max(count, 1.0)
        return {f"{prefix}loss": loss / count, f"{prefix}accuracy": top1 / count,
                f"{prefix}top5": topk / count}

    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
    latest = tf.train.latest_checkpoint(shared_backup) if resume else None
    if latest:  # every worker reads the chief's
        checkpoint.restore(latest).assert_existing_objects_matched()
        if verbose and place.chief:
            print(f"resumed after epoch {int(epoch)} from {latest}", flush=True)
    manager = tf.train.CheckpointManager(checkpoint, backup, max_to_keep=1)
    initial = int(epoch)

    history: dict[str, list[float]] = {}
    best_value = -math.inf
    if place.chief:  # rows of epochs after the checkpoint are run again
        best_value = _keep_rows(csv_log, initial, monitor)
    writer = tf.summary.create_file_writer(tensorboard) if place.chief else None
    for cb in callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    distributed = strategy.experimental_distribute_dataset(train_ds)
    for e in range(initial, epochs):
        # a new pass each epoch, as fit makes: the same shuffles as one worker
        logs = logs_of(train_steps(iter(distributed), tf.constant(steps_per_epoch)))
        if val_ds is not None:  # the whole split on every worker: the same numbers
            totals = sum((eval_step(x, y) for x, y in val_ds), tf.zeros([4]))
            logs.update(logs_of(totals, "val_"))
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        for name, value in logs.items():
            history.setdefault(name, []).append(value)
        if place.chief:  # the row first: every checkpointed epoch has its row
            _append_csv(csv_log, e, logs)
            with writer.as_default():
                for name, value in logs.items():
                    tf.summary.scalar(name, value, step=e)
            writer.flush()
            if logs.get(monitor, -math.inf) > best_value:
                best_value = logs[monitor]
                model.save(best)
        epoch.assign(e + 1)
        manager.save()  # every worker: saving may take part in collectives
        for cb in callbacks:
            cb.on_epoch_end(e, dict(logs))
        if verbose and place.chief:  # Keras's epoch line, once for the job
            print(f"Epoch {e + 1}/{epochs} - " + " - ".join(
                f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
    for cb in callbacks:
        cb.on_train_end()
    if place.chief:  # finished: nothing to resume (as BackupAndRestore deletes its own)
        shutil.rmtree(backup, ignore_errors=True)
    return history, initial


def _keep_rows(csv_log: str, epochs: int, monitor: str) -> float:
    """Keeps the log's rows of the first ``epochs`` epochs; returns their best ``monitor``."""
    if not os.path.exists(csv_log):
        return -math.inf
    with open(csv_log, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, [r for r in reader if int(r["epoch"]) < epochs]
    with open(csv_log, "w", newline="") as f:
        if fields and rows:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    return max((float(r[monitor]) for r in rows if r.get(monitor)), default=-math.inf)


def _append_csv(path: str, epoch: int, logs: dict) -> None:
    """One row per epoch, the columns Keras's CSVLogger writes (epoch, then sorted keys)."""
    fields = ["epoch", *sorted(logs)]
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow({"epoch": epoch, **logs})
