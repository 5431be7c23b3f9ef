"""Loaded SavedModel versions and the manager that finds, loads and swaps them.

Mirrors TF Serving's ServerCore for the parts a client can observe: which version a
request gets (latest, specific, or by label), the version policy, the model status, and
the exact error texts when a model, version, label or signature is missing. A newly
pushed version is loaded beside the serving one and only then swapped in, so no request
ever finds the model missing. ``reconfigure`` (and the config-file poller, TF Serving's
``--model_config_file_poll_wait_seconds``) adds, removes and changes models while serving.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Callable

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     prediction_log_pb2)
from tensorflow_serving.config import model_server_config_pb2

from kvid.serving.contract import DEFAULT_SIGNATURE, WARMUP_PATH
from kvid.serving.errors import ServingError, invalid_argument, not_found
from kvid.serving.json_tensor import type_name
from kvid.serving.metrics import Metrics
from kvid.serving.tensor_proto import from_tensor_proto

log = logging.getLogger(__name__)

PREDICT_METHOD = "tensorflow/serving/predict"
_MAX_LOAD_ATTEMPTS = 5  # TF Serving's default max_num_load_retries is 5
State = get_model_status_pb2.ModelVersionStatus.State


def shape_str(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _signature_shape(info: meta_graph_pb2.TensorInfo) -> list[int] | None:
    if info.tensor_shape.unknown_rank:
        return None
    return [d.size for d in info.tensor_shape.dim]


def _read_meta_graph(path: str) -> meta_graph_pb2.MetaGraphDef:
    """The ``serve`` MetaGraphDef, for the SignatureDefs exactly as TF Serving reports them."""
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    for meta_graph in saved.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ValueError(f"no MetaGraphDef tagged 'serve' in {path}")


class Servable:
    """One loaded version of one model: its SignatureDefs and callable signatures."""

    def __init__(self, name: str, version: int, path: str):
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = dict(_read_meta_graph(path).signature_def)
        self._loaded = tf.saved_model.load(path, tags=["serve"])
        self._functions = dict(self._loaded.signatures)
        self.run: Callable[[str, dict], dict] = self._call  # replaced when batching

    def __repr__(self):
        return f"Servable({self.name!r}, version={self.version})"

    def signature_def(self, signature_name: str, *, rest: bool):
        """The SignatureDef, or TF Serving's not-found error (REST and gRPC word it apart)."""
        key = signature_name or DEFAULT_SIGNATURE
        sig = self.signature_defs.get(key)
        if sig is None:
            raise _missing_signature(key, rest=rest)
        return sig

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        """What GetModelMetadata reports: every SignatureDef of the MetaGraph."""
        sigs = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in self.signature_defs.items():
            sigs.signature_def[key].CopyFrom(sig)
        return sigs

    def input_dtypes(self, signature_name: str) -> dict[str, tf.DType]:
        sig = self.signature_def(signature_name, rest=True)
        return {name: tf.as_dtype(info.dtype) for name, info in sig.inputs.items()}

    def predict(self, signature_name: str, inputs: dict[str, np.ndarray],
                output_filter=()) -> dict[str, np.ndarray]:
        """Checks ``inputs`` against the signature, runs it, returns the (filtered) outputs."""
        key = signature_name or DEFAULT_SIGNATURE
        sig = self.signature_def(key, rest=False)
        _check_inputs(sig, inputs)
        seen = set()
        for alias in output_filter:  # predict_util.cc PreProcessPrediction
            if alias not in sig.outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected "
                    f"to be in the set {{{','.join(sorted(sig.outputs))}}}.")
            if alias in seen:
                raise invalid_argument(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        outputs = self.run(key, inputs)
        return {k: outputs[k] for k in output_filter} if output_filter else outputs

    def _call(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        fn = self._functions.get(signature_name)
        if fn is None:  # in the MetaGraph but not callable, e.g. __saved_model_init_op
            raise _missing_signature(signature_name, rest=False)
        try:
            out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.OpError as e:
            raise ServingError.from_tf(e) from None
        except (TypeError, ValueError) as e:
            raise invalid_argument(str(e)) from None
        return {k: v.numpy() for k, v in out.items()}

    def warm_up(self) -> int:
        """Replays ``assets.extra/tf_serving_warmup_requests`` (TF Serving's model warmup)."""
        path = os.path.join(self.path, WARMUP_PATH)
        if not os.path.exists(path):
            return 0
        n = 0
        for record in tf.data.TFRecordDataset(path):
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if entry.WhichOneof("log_type") != "predict_log":
                continue
            request = entry.predict_log.request
            inputs = {k: from_tensor_proto(v) for k, v in request.inputs.items()}
            self.predict(request.model_spec.signature_name, inputs)
            n += 1
        return n


def _missing_signature(key: str, *, rest: bool) -> ServingError:
    """TF Serving words this apart: REST in GetInfoMap, gRPC in predict_util.cc."""
    if rest:
        return invalid_argument(f'Serving signature name: "{key}" not found in signature def')
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                        f'Serving signature key "{key}" not found.')


def _check_inputs(sig, inputs: dict[str, np.ndarray]) -> None:
    """The request's tensors against the SignatureDef: names, dtypes, shapes."""
    if set(inputs) != set(sig.inputs):
        got, want = sorted(inputs), sorted(sig.inputs)
        raise invalid_argument(  # predict_util.cc VerifyRequestInputsSize
            f"input size does not match signature: {len(got)}!={len(want)} "
            f"len({{{','.join(got)}}}) != len({{{','.join(want)}}}). "
            f"Sent extra: {{{','.join(sorted(set(got) - set(want)))}}}. "
            f"Missing but required: {{{','.join(sorted(set(want) - set(got)))}}}.")
    for i, (name, info) in enumerate(sorted(sig.inputs.items())):
        arr = inputs[name]
        want = tf.as_dtype(info.dtype)
        got = tf.string if arr.dtype.kind in "OSU" else tf.as_dtype(arr.dtype)
        if got != want:
            raise invalid_argument(
                f"Expects arg[{i}] to be {type_name(want)} but {type_name(got)} is provided")
        check_input_shape(name, arr.shape, info)


def check_input_shape(name: str, shape, info: meta_graph_pb2.TensorInfo) -> None:
    """An input's shape against its TensorInfo; the gRPC front end checks a request's
    declared shape with it before materializing the tensor."""
    want = _signature_shape(info)
    if want is not None and (len(want) != len(shape) or any(
            d >= 0 and d != a for d, a in zip(want, shape))):
        raise invalid_argument(
            f"Input '{name}' has shape {shape_str(shape)}, which is not compatible "
            f"with the signature's shape {shape_str(want)}")


@dataclasses.dataclass
class ModelSource:
    """What TF Serving's ModelConfig says about one model, as kvid uses it."""

    name: str
    base_path: str
    policy: str = "latest"  # "latest" | "all" | "specific"
    num_versions: int = 1  # for "latest"
    versions: tuple[int, ...] = ()  # for "specific"
    labels: dict[str, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_proto(cls, config: model_server_config_pb2.ModelConfig,
                   root: str | None = None) -> "ModelSource":
        """A ModelConfig entry; ``root`` re-roots absolute base paths (container paths)."""
        if config.model_platform not in ("", "tensorflow"):
            raise ValueError(f"model {config.name}: only model_platform 'tensorflow' is "
                             f"served. Received: {config.model_platform!r}")
        base = config.base_path
        if root is not None:
            base = os.path.join(root, base.lstrip("/"))
        policy = config.model_version_policy
        kind = policy.WhichOneof("policy_choice") or "latest"
        return cls(
            name=config.name,
            base_path=os.path.abspath(base),
            policy=kind,
            num_versions=policy.latest.num_versions or 1,
            versions=tuple(policy.specific.versions),
            labels=dict(config.version_labels),
        )

    def wanted(self, on_disk: list[int]) -> list[int]:
        """The versions the policy serves out of those on disk."""
        on_disk = sorted(on_disk)
        if self.policy == "all":
            return on_disk
        if self.policy == "specific":
            return [v for v in on_disk if v in self.versions]
        return on_disk[-self.num_versions:] if on_disk else []


def versions_on_disk(base_path: str) -> dict[int, str]:
    """Numeric version folders that hold a complete SavedModel (``saved_model.pb``)."""
    try:
        entries = os.listdir(base_path)
    except OSError:
        return {}
    out = {}
    for entry in entries:
        path = os.path.join(base_path, entry)
        if entry.isdigit() and os.path.isfile(os.path.join(path, "saved_model.pb")):
            out[int(entry)] = path
    return out


@dataclasses.dataclass
class _VersionState:
    state: int
    error: tuple[str, str] = ("OK", "")  # (error_code name, message)
    attempts: int = 0


class _Model:
    def __init__(self, source: ModelSource):
        self.source = source
        self.serving: dict[int, Servable] = {}  # replaced whole, never mutated
        self.states: dict[int, _VersionState] = {}
        self.removed = False  # dropped from the config: unloaded, states kept (END)


def _check_unique(sources: list[ModelSource]) -> None:
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"Illegal to list model {dup} multiple times in config list")


class ModelManager:
    """Serves every configured model; ``poll()`` loads new versions and retires old ones.

    ``reload`` (with ``reload_seconds`` > 0) returns the configured models anew, e.g. by
    re-reading ``--model_config_file``; it is called every ``reload_seconds`` and a
    changed answer is applied with ``reconfigure``. When it raises (a config file that
    does not parse), the error is logged and the last good config stays in force.
    ``metrics`` gets each SavedModel load (``load_attempt_count``, ``load_latency``).
    """

    def __init__(self, sources: list[ModelSource], *, poll_seconds: float = 1.0,
                 warmup: bool = True, wrap: Callable[[Servable], None] | None = None,
                 reload: Callable[[], list[ModelSource]] | None = None,
                 reload_seconds: float = 0, metrics: Metrics | None = None):
        _check_unique(sources)
        self._models = {s.name: _Model(s) for s in sources}  # replaced whole on reconfigure
        self._sources = list(sources)
        self._poll_seconds = poll_seconds
        self._warmup = warmup
        self._wrap = wrap
        self._reload = reload
        self._reload_seconds = reload_seconds
        self.metrics = metrics
        self._lock = threading.Lock()  # one poll or reconfigure at a time
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def sources(self) -> list[ModelSource]:
        """The models of the config in force."""
        return list(self._sources)

    def start(self) -> "ModelManager":
        """Loads what is on disk now, then keeps polling in the background."""
        self.poll()
        if self._poll_seconds > 0:
            self._threads.append(threading.Thread(target=self._loop, name="kvid-model-poll",
                                                  daemon=True))
        if self._reload is not None and self._reload_seconds > 0:
            self._threads.append(threading.Thread(target=self._reload_loop,
                                                  name="kvid-config-poll", daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self.poll()
            except Exception:  # a bad push must not stop the poller
                log.exception("polling model directories failed")

    def _reload_loop(self) -> None:
        while not self._stop.wait(self._reload_seconds):
            self.reload_config()

    def reload_config(self) -> bool:
        """One round of the config poller (``PollFilesystemAndReloadConfig``): True when
        a changed config was applied; a config that fails to read or to apply is logged
        and the one in force stays."""
        try:
            sources = self._reload()
        except Exception as e:
            log.error("Failed to read ModelServerConfig file: %s", e)
            return False
        try:
            return self.reconfigure(sources)
        except Exception as e:
            log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", e)
            return False

    def reconfigure(self, sources: list[ModelSource]) -> bool:
        """Serves ``sources`` from now on (``ServerCore::ReloadConfig``): new models are
        loaded before this returns, removed ones unloaded (their versions report END),
        and changed ones (base path, version policy, labels) updated in place. Returns
        False, changing nothing, when ``sources`` is the config in force."""
        _check_unique(sources)
        with self._lock:
            if sources == self._sources:
                return False
            models = dict(self._models)
            changed = []
            for source in sources:
                model = models.get(source.name)
                if model is None:
                    model = models[source.name] = _Model(source)
                    log.info("adding model %s from %s", source.name, source.base_path)
                elif model.removed or model.source != source:
                    log.info("updating model %s", source.name)
                else:
                    continue
                model.source, model.removed = source, False
                changed.append(model)
            kept = {s.name for s in sources}
            for name, model in models.items():
                if name not in kept and not model.removed:
                    log.info("removing model %s", name)
                    model.removed = True
                    model.source = dataclasses.replace(model.source, labels={})
                    changed.append(model)
            self._models = models
            self._sources = list(sources)
            for model in changed:
                self._update(model)
            return True

    def poll(self) -> None:
        with self._lock:
            for model in self._models.values():
                if not model.removed:
                    self._update(model)

    def _load(self, name: str, version: int, path: str) -> Servable:
        """One SavedModel load, counted as TF's ``LoadSavedModel`` counts it."""
        start_ns = time.monotonic_ns()
        ok = False
        try:
            servable = Servable(name, version, path)
            ok = True
            return servable
        finally:
            if self.metrics is not None:
                self.metrics.record_load(path, ok, (time.monotonic_ns() - start_ns) // 1000)

    def _update(self, model: _Model) -> None:
        on_disk = {} if model.removed else versions_on_disk(model.source.base_path)
        wanted = model.source.wanted(list(on_disk))
        serving = dict(model.serving)
        for version in wanted:
            st = model.states.get(version)
            if version in serving or (st and st.attempts >= _MAX_LOAD_ATTEMPTS):
                continue
            model.states[version] = st = st or _VersionState(State.START)
            st.state, st.attempts = State.LOADING, st.attempts + 1
            try:
                servable = self._load(model.source.name, version, on_disk[version])
                if self._wrap is not None:
                    self._wrap(servable)
                if self._warmup:
                    servable.warm_up()
            except Exception as e:  # keep serving the old version; retry next poll
                log.error("loading %s version %d failed: %s", model.source.name, version, e)
                st.state, st.error = State.END, ("UNKNOWN", str(e))
                continue
            serving[version] = servable
            st.state, st.error, st.attempts = State.AVAILABLE, ("OK", ""), 0
            log.info("loaded %s version %d from %s", model.source.name, version, on_disk[version])
        retired = [v for v in serving if v not in wanted]
        for v in retired:
            del serving[v]
        model.serving = serving  # the swap: one reference assignment
        for v in retired:
            model.states[v].state = State.END
            log.info("unloaded %s version %d", model.source.name, v)

    # ------------------------------------------------------------------ lookups

    def get(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request addresses, or TF Serving's error for it."""
        model = self._models.get(name)
        if label:
            if model is None or label not in model.source.labels:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = model.source.labels[label]
        serving = model.serving if model is not None else {}
        if version is None:
            if not serving:
                raise not_found(f"Servable not found for request: Latest({name})")
            return serving[max(serving)]
        servable = serving.get(version)
        if servable is None:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return servable

    def status(self, name: str, version: int | None = None
               ) -> get_model_status_pb2.GetModelStatusResponse:
        """``GetModelStatusImpl``: one version, or every version seen, newest first."""
        model = self._models.get(name)
        states = model.states if model is not None else {}
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            versions = [version]
        else:
            if not states:
                raise not_found(f"Could not find any versions of model {name}")
            versions = sorted(states, reverse=True)
        response = get_model_status_pb2.GetModelStatusResponse()
        for v in versions:
            st = states[v]
            entry = response.model_version_status.add(version=v, state=st.state)
            codes = entry.status.DESCRIPTOR.fields_by_name["error_code"].enum_type
            entry.status.error_code = codes.values_by_name[st.error[0]].number
            entry.status.error_message = st.error[1]
        return response

    def wait_for(self, name: str, version: int, timeout: float = 60.0) -> Servable:
        """Polls until ``version`` of ``name`` serves (for tests and scripted pushes)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.get(name, version)
            except ServingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
