"""Spans out through OpenTelemetry: one trace per run, continued by every process that works on it.

Configured by the standard variables only, read by the official SDK and exporters:
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), `OTEL_EXPORTER_OTLP_PROTOCOL`
(`http/protobuf`, the default, or `grpc`), `OTEL_SERVICE_NAME` (default `agentlog-<service>`),
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_EXPORTER` (`otlp`, `console` or `none`),
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, and `OTEL_SDK_DISABLED`. Nothing is exported unless an endpoint
or an exporter is named. Spans leave on the SDK's batch thread: a collector that is slow or down
costs a run nothing (the queue is bounded; what does not fit is dropped), and a process that stops
waits for it a few seconds at most.

A run's trace context is recorded in its RunStarted (`traceparent`, the root span's) and in the
`traceparent` header of each of its records; `processors.spans` says what each span holds.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from datetime import datetime

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from processors.spans import SpanSpec, parse_traceparent

__all__ = ["configure", "enabled", "emit", "shutdown", "tool_io_opted_in", "trace_destination", "TOOL_IO_ENV"]

log = logging.getLogger(__name__)

TOOL_IO_ENV = "AGENTLOG_TRACE_TOOL_IO"
"""Set to 1 to put tools' arguments and results on their spans (off: they may hold personal data)."""

_FORCED: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("forced_ids", default=None)
_PROPAGATOR = TraceContextTextMapPropagator()
_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}


class _RecordedIds(RandomIdGenerator):
    """Random ids, except for a run's root span, whose ids were recorded when the run began."""

    def generate_span_id(self) -> int:
        forced = _FORCED.get()
        return forced[1] if forced else super().generate_span_id()

    def generate_trace_id(self) -> int:
        forced = _FORCED.get()
        return forced[0] if forced else super().generate_trace_id()


_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _exporter_from_env() -> SpanExporter | None:
    where = trace_destination()
    if where is None:
        return None
    if where == "console":
        return ConsoleSpanExporter()
    named = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named not in ("", "otlp"):
        log.warning("OTEL_TRACES_EXPORTER=%s is not otlp, console or none: no spans", named)
        return None
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip().lower()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        return GrpcExporter()
    if protocol != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not http/protobuf or grpc: no spans", protocol)
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
    return HttpExporter()


def configure(service: str, *, exporter: SpanExporter | None = None) -> bool:
    """Set up this process's tracer from the environment (or with `exporter`, for tests);
    True when spans will be exported."""
    global _provider, _tracer
    exporter = exporter or _exporter_from_env()
    if exporter is None:
        return False
    name = os.environ.get("OTEL_SERVICE_NAME") or f"agentlog-{service}"
    resource = Resource.create({"service.name": name, "service.namespace": "agentlog",
                                "agentlog.service": service})
    provider = TracerProvider(resource=resource, id_generator=_RecordedIds())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider, _tracer = provider, provider.get_tracer("agentlog")
    log.info("spans go to %s as %s", type(exporter).__name__, name)
    return True


def trace_destination() -> str | None:
    """Where this environment sends spans (an endpoint, or "console"), or None if nowhere."""
    named = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if _truthy("OTEL_SDK_DISABLED") or named == "none":
        return None
    if named == "console":
        return "console"
    endpoint = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    # Naming the exporter alone sends to the exporter's default endpoint (localhost).
    return endpoint or (f"the {named} exporter's default endpoint" if named else None)


def enabled() -> bool:
    return _tracer is not None


def tool_io_opted_in() -> bool:
    return _truthy(TOOL_IO_ENV)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


def emit(spec: SpanSpec, traceparent: str | None) -> None:
    """Export the span `spec` describes, in the run's trace `traceparent` (a no-op when spans
    are off; a run without a recorded trace gets no root span, its other spans begin a trace)."""
    if _tracer is None:
        return
    token = None
    if spec.root:
        ids = parse_traceparent(traceparent)
        if ids is None:
            return
        token = _FORCED.set((int(ids[0], 16), int(ids[1], 16)))
        parent = Context()
    else:
        parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else Context()
    try:
        span = _tracer.start_span(spec.name, context=parent, kind=_KINDS.get(spec.kind, SpanKind.INTERNAL),
                                  attributes=spec.attributes, start_time=_ns(spec.start))
    finally:
        if token is not None:
            _FORCED.reset(token)
    if spec.error_type is not None:
        span.set_attribute("error.type", spec.error_type)
        span.set_status(Status(StatusCode.ERROR, spec.error_type))
    span.end(end_time=max(_ns(spec.end), _ns(spec.start)))


def shutdown(timeout_s: float = 5.0) -> None:
    """Send what is queued, waiting `timeout_s` at most (a collector that is down does not
    hold the process)."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is None:
        return
    done = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    done.start()
    done.join(timeout_s)
