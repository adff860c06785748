"""BatchHandler: adapts TorchServe's batch of requests to a codec and one forward pass.

Each request is decoded on its own; a bad one gets its own 4xx and JSON body while the
valid ones share one batched forward pass and get their answers in their own positions.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
import uuid
from typing import Any

import numpy as np
import torch

from handlers import contracts, oip, runtime, scheduling
from handlers.batch_metrics import BatchTally
from handlers.codec import (
    BINARY_HEADER,
    Decoded,
    Limits,
    Payload,
    RequestError,
    busy,
    check_cost,
    non_finite_output,
    request_payload,
    undecodable,
)
from handlers.codecs import codec_for
from handlers.monitoring import OUTCOMES, Counts, Monitor
from handlers.scheduling import Job

logger = logging.getLogger(__name__)

JSON = "application/json"
# Set by `tsforge serve` for TorchServe and inherited by its workers: where key_file.json is.
KEY_FILE_ENV = "TSFORGE_KEY_FILE"
VERSION_HEADER = "x-model-version"
MODEL_CARD = "model_card.json"
# Measured on 2 cores (README, "Worker threads"): one intra-op thread per worker wins once
# requests arrive concurrently, since TorchServe's batching already fills both cores.
DEFAULT_THREADS = 1
# How often a worker sends its batch figures and monitoring counts to the frontend: a few
# metric lines a second, whatever the traffic, instead of lines on every batch or request
# (handlers.batch_metrics; README, "Monitoring").
FLUSH_SECONDS = 1.0


def is_management_describe(context: Any) -> bool:
    """True only for the management API's describe call, never for an inference request.

    TorchServe sends describe to the worker as an inference message marked by a `describe:
    True` header, which any inference client can copy. It also copies the management call's
    own headers, and only a management call can carry the management key (TorchServe checks
    it), so the key is what proves the origin. `tsforge serve` tells workers where the key
    file is; without one, the card is not served.
    """
    if context.get_request_header(0, "describe") != "True":
        return False
    key_file = os.environ.get(KEY_FILE_ENV)
    bearer = str(context.get_request_header(0, "Authorization") or context.get_request_header(0, "authorization"))
    try:
        with open(key_file or "") as f:
            key = json.load(f)["management"]["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return hmac.compare_digest(bearer.encode(), f"Bearer {key}".encode())


def select_device(gpu_id: int | None, cuda_available: bool) -> torch.device:
    """The worker's assigned GPU when CUDA is there, else the CPU."""
    if cuda_available and gpu_id is not None:
        return torch.device(f"cuda:{int(gpu_id)}")
    return torch.device("cpu")


class DropPerBatchLine(logging.Filter):
    """TorchServe's worker logs "Backend received inference at: <time>" at INFO for every batch
    (ts.protocol.otf_message_handler); the frontend reads it off the worker's stdout and writes
    it to model_log.log. Measured with py-spy on a movielens worker at c=32: 4 % of its CPU,
    then the frontend's and the disk's share. Nothing reads it; other lines pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and str(record.msg).startswith("Backend received inference"))


def quiet_per_batch_lines() -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, DropPerBatchLine) for f in handler.filters):
            handler.addFilter(DropPerBatchLine())


class BatchHandler:
    """Decodes each request with the archive's codec, runs one forward pass, encodes each answer."""

    def initialize(self, context: Any) -> None:
        quiet_per_batch_lines()
        props = context.system_properties
        self.model_name = context.model_name
        # Every answer names the archive version that made it (a header, so JSON and OIP
        # bodies stay as they are): a rolling update can be followed from the client side.
        self.model_version = str(context.manifest["model"].get("modelVersion", ""))
        self.model_dir = props["model_dir"]
        settings = (context.model_yaml_config or {}).get("handler", {}) or {}
        self.limits = Limits.from_mapping(settings.get("limits", {}))
        self.contract = contracts.from_yaml(settings, self.model_dir)
        # Only the declared kind's codec is imported (and only its modules are in the archive).
        self.codec = codec_for(self.contract.kind)
        self.cost_unit = self.codec.COST_UNIT
        # The runtimes' default (one thread per core, per worker) oversubscribes small machines.
        self.threads = int(settings.get("threads", DEFAULT_THREADS))
        device = select_device(props.get("gpu_id"), torch.cuda.is_available())
        serialized = context.manifest["model"]["serializedFile"]
        self.runtime = runtime.load(os.path.join(self.model_dir, serialized), device, self.threads)
        with open(os.path.join(self.model_dir, MODEL_CARD)) as f:
            self.card = json.load(f)
        profile = self.card.get("reference_profile")
        self.monitor = Monitor(profile, self.contract, self.codec.input_signals) if profile else None
        self.tally = BatchTally()
        if context.metrics is not None:  # None in-process, without TorchServe's metrics cache
            threading.Thread(target=self._send_counts, args=(context.metrics,), daemon=True).start()
        self.initialized = True

    def decode(self, payload: Payload) -> Decoded:
        return self.codec.decode_request(payload, self.contract, self.limits)

    def collate(self, rows: list[np.ndarray]) -> np.ndarray:
        """One model input from one pass's rows: the kind's own (text pads to the longest in
        the pass), or a plain concatenation."""
        return getattr(self.codec, "collate", np.concatenate)(rows)

    def encode(self, outputs: np.ndarray, decoded: Decoded) -> Any:
        return self.codec.encode_outputs(outputs, decoded, self.contract, self.model_name)

    def describe(self) -> dict[str, Any]:
        """What `GET /models/<name>?customized=true` shows: the card plus the live limits."""
        live = {"runtime": self.runtime.name, "threads": self.threads, "device": self.runtime.device}
        return {**self.card, "limits": vars(self.limits), **live}

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[str | bytes]:
        """One answer per request, always: a request can change only its own answer."""
        if len(data) == 1 and is_management_describe(context):
            return [json.dumps(self.describe())]
        started = time.perf_counter()
        responses: list[str | bytes] = [""] * len(data)
        payloads: dict[int, Payload] = {}
        for idx, request in enumerate(data):
            try:
                headers = context.get_all_request_header(idx) if context.request_processor else {}
                payloads[idx] = request_payload(request, self.limits, headers)
            except Exception as e:  # whatever a request holds, it fails only itself
                self._refuse(context, idx, responses, e if isinstance(e, RequestError) else undecodable(e))
        self._refuse_by_header(payloads, context, responses)
        jobs: list[Job[Decoded]] = []
        for idx, payload in payloads.items():
            try:
                decoded = self.decode(payload)
                check_cost(decoded, self.limits, self.cost_unit)
                jobs.append(Job(idx, len(decoded.rows), decoded.length, decoded))
            except Exception as e:  # whatever a request holds, it fails only itself
                self._refuse(context, idx, responses, e if isinstance(e, RequestError) else undecodable(e))
        decoded_at = time.perf_counter()
        served, deferred = scheduling.admit(jobs, self.limits.max_call_cost)
        for job in deferred:
            self._refuse(context, job.index, responses, busy(self.limits, self.cost_unit))
        passes = scheduling.plan_passes(served, self.limits.max_pass_cost)
        results = [result for jobs_of_pass in passes for result in scheduling.run_isolated(jobs_of_pass, self._forward)]
        inferred_at = time.perf_counter()
        answered: list[tuple[np.ndarray, np.ndarray]] = []
        for job, outputs, error in results:
            if error is None:
                responses[job.index], ok = self._answer(context, job.index, outputs, job.item)
                if ok:
                    answered.append((job.item.rows, outputs))
            else:
                responses[job.index] = self._failed(context, job.index, "inference_failed", error)
        self._observe(answered)
        if served:
            stages = (decoded_at - started, inferred_at - decoded_at, time.perf_counter() - inferred_at)
            self.tally.add(len(served), stages)
        return responses

    def _refuse_by_header(self, payloads: dict[int, Payload], context: Any, responses: list[str | bytes]) -> None:
        """Where the kind reads a request's cost from its header (`declared_cost`: an audio
        file), refuse before decoding anything what the header already refuses, then what the
        call's budget cannot take, cheapest first: neither costs the call a decode (a 60 s OGG
        costs more to decode than its forward pass). The rest are admitted once decoded."""
        declared_cost = getattr(self.codec, "declared_cost", None)
        if declared_cost is None:
            return
        declared = []
        for idx, payload in list(payloads.items()):
            try:
                cost = declared_cost(payload, self.contract, self.limits)
            except RequestError as e:
                del payloads[idx]
                self._refuse(context, idx, responses, e)
                continue
            except Exception:  # unreadable here: decoding names the problem
                cost = None
            if cost is not None and cost <= self.limits.max_pass_cost:  # dearer: decoding answers 413
                declared.append(Job(idx, 1, cost, None))
        for job in scheduling.admit(declared, self.limits.max_call_cost)[1]:
            del payloads[job.index]
            self._refuse(context, job.index, responses, busy(self.limits, self.cost_unit))

    def _forward(self, jobs: list[Job[Decoded]]) -> list[np.ndarray]:
        """One forward pass over `jobs`' rows, split back into one output per job."""
        outputs = self.runtime(self.collate([job.item.rows for job in jobs]))
        bounds = np.cumsum([job.rows for job in jobs])[:-1]
        parts = np.split(outputs, bounds)
        own = getattr(self.codec, "own_outputs", None)  # a padded pass's outputs cut to each request's own
        return [own(part, job.item) for part, job in zip(parts, jobs, strict=True)] if own else parts

    def _observe(self, answered: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Keep the answered rows for the monitoring counts; monitoring never fails a request."""
        if self.monitor is None or not answered:
            return
        self.monitor.count("answered", len(answered))
        try:
            self.monitor.add([rows for rows, _ in answered], [outputs for _, outputs in answered])
        except Exception:
            logger.exception("monitoring could not count a batch (its answers went out as usual)")

    def _send_counts(self, metrics: Any) -> None:
        """The worker's metrics thread: the monitoring reference shares and every series at zero
        once (so Prometheus sees each bucket from the start), then every FLUSH_SECONDS the batch
        figures and the monitoring counts gathered since."""
        if self.monitor is not None:
            self._send_reference(metrics)
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                for name, size, value in self.tally.take():
                    self._emit(metrics, name, value, BatchSize=str(size))
                if self.monitor is not None:
                    self._send(metrics, self.monitor.take())
            except Exception:
                logger.exception("batch figures or monitoring counts could not be sent")

    def _send_reference(self, metrics: Any) -> None:
        monitor = self.monitor
        for (side, signal, bucket), share in monitor.reference():
            self._emit(
                metrics, "MonitorReferenceShare", share, Side=side, Signal=signal, Bucket=str(bucket), gauge=True
            )
            self._emit(metrics, "MonitorRows", 0, Side=side, Signal=signal, Bucket=str(bucket))
        stats = monitor.profile["stats"]
        if "mean_confidence" in stats:
            self._emit(metrics, "MonitorReference", stats["mean_confidence"], Stat="mean_confidence", gauge=True)
            self._emit(metrics, "MonitorConfidenceSum", 0.0)
        for outcome in OUTCOMES:
            self._emit(metrics, "MonitorRequests", 0, Outcome=outcome)

    def _send(self, metrics: Any, counts: Counts) -> None:
        for (side, signal, bucket), rows in counts.rows.items():
            self._emit(metrics, "MonitorRows", rows, Side=side, Signal=signal, Bucket=str(bucket))
        if counts.confidence_sum:
            self._emit(metrics, "MonitorConfidenceSum", counts.confidence_sum)
        for outcome, n in counts.requests.items():
            self._emit(metrics, "MonitorRequests", n, Outcome=outcome)

    def _emit(self, metrics: Any, name: str, value: float, gauge: bool = False, **dimensions: str) -> None:
        """One metric line to the frontend, labelled with the model and its version (two
        versions in a rolling update each have their own reference)."""
        from ts.metrics.dimension import Dimension
        from ts.metrics.metric_type_enum import MetricTypes

        labels = {"ModelName": self.model_name, "Level": "Model", "Version": self.model_version, **dimensions}
        dims = [Dimension(k, v) for k, v in labels.items()]
        if gauge:
            metrics.add_metric(name, value, "value", None, dims, MetricTypes.GAUGE)
        else:
            metrics.add_counter(name, value, None, dims)

    def _refuse(self, context: Any, idx: int, responses: list[str | bytes], error: RequestError) -> None:
        self._count(context, "RejectedRequests", "Reason", error.code)
        if self.monitor is not None:
            self.monitor.count("rejected")
        responses[idx] = self._reply(context, idx, error.status, error.body())

    def _failed(self, context: Any, idx: int, code: str, error: Exception) -> str:
        """A 500 that names no internals: the detail goes to the log under the request's id."""
        request_id = (context.get_request_id(idx) if context.request_ids else None) or uuid.uuid4().hex
        logger.error("request %s failed (%s)", request_id, code, exc_info=error)
        self._count(context, "FailedRequests", "Reason", code)
        if self.monitor is not None:
            self.monitor.count("failed")
        detail = f"The model could not answer this request; the server log has the cause under id {request_id}."
        return self._reply(context, idx, 500, {"error": code, "detail": detail, "request_id": request_id})

    def _answer(self, context: Any, idx: int, outputs: np.ndarray, decoded: Decoded) -> tuple[str | bytes, bool]:
        """The 200 answer for one request (and True), or its own error: never NaN or Infinity in a body."""
        if not np.isfinite(outputs).all():
            error = non_finite_output(decoded)
            self._count(context, "RejectedRequests", "Reason", error.code)
            if self.monitor is not None:
                self.monitor.count("rejected")
            return self._reply(context, idx, error.status, error.body()), False
        try:
            body = self.encode(outputs, decoded)
            if decoded.binary_outputs:  # the protocol's binary extension, as the client asked
                data, header_length = oip.encode_response(body, decoded.binary_outputs)
                if header_length is not None:
                    context.set_response_content_type(idx, "application/octet-stream")
                    context.set_response_header(idx, BINARY_HEADER, str(header_length))
                    context.set_response_header(idx, VERSION_HEADER, self.model_version)
                    return data, True
            return self._reply(context, idx, 200, body), True
        except Exception as e:
            return self._failed(context, idx, "encode_failed", e), False

    def _reply(self, context: Any, idx: int, status: int, body: Any) -> str:
        context.set_response_content_type(idx, JSON)
        context.set_response_header(idx, VERSION_HEADER, self.model_version)
        if status != 200:
            context.set_response_status(status, body.get("error", ""), idx)
        return json.dumps(body, allow_nan=False)

    @staticmethod
    def _count(context: Any, name: str, dimension: str, value: str) -> None:
        if context.metrics is None:  # in-process use without TorchServe's metrics cache
            return
        from ts.metrics.dimension import Dimension

        context.metrics.add_counter(f"Handler{name}", 1, None, [Dimension(dimension, value)])
