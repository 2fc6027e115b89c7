"""Optional OpenTelemetry spans (``FlinksClient(tracing=True)``, needs ``opentelemetry-api``).

One span per data call (``flinks Investments``...) and a child span per HTTP attempt
(``POST Authorize``...). Attributes: ``flinks.endpoint``, ``flinks.login_id`` (shortened
unless ``redact_login_ids=False``), ``flinks.request_id``, ``flinks.attempt``,
``http.request.method``, ``http.response.status_code``, ``error.type``. Never a key, a
token, a URL (it holds the customer id) or a body.
"""

from __future__ import annotations

from typing import Any

from ._errors import ConfigurationError
from ._version import __version__

__all__ = ["get_tracer"]


def get_tracer() -> Any:
    """The ``flinks_async`` tracer of the global tracer provider."""
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigurationError(
            "tracing=True needs opentelemetry-api: pip install 'flinks-async[otel]'"
        ) from None
    return trace.get_tracer("flinks_async", __version__)


def use_span(span: Any) -> Any:
    """Make ``span`` current (its children nest under it) without ending it on exit."""
    from opentelemetry import trace

    return trace.use_span(span, end_on_exit=False)


def error_status(span: Any, exc: BaseException) -> None:
    """Mark ``span`` failed with the exception's type and (secret-free) message."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", type(exc).__name__)
    span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))


def attempt_span(tracer: Any, call: Any, attempt: int, shown_login_id: str) -> Any:
    """The span of one HTTP attempt (``POST Authorize``...), started."""
    return tracer.start_span(
        f"{call.method} {call.endpoint}",
        attributes={
            "http.request.method": call.method,
            "flinks.endpoint": call.endpoint,
            "flinks.attempt": attempt,
            "flinks.login_id": shown_login_id,
            "flinks.request_id": call.request_id or "",
        },
    )


def end_attempt_span(span: Any, status: int, failure: BaseException | None) -> None:
    """End an attempt's span with its status code, failed if ``failure``."""
    if status:
        span.set_attribute("http.response.status_code", status)
    if failure is not None:
        error_status(span, failure)
    span.end()
