"""GET /metrics: Prometheus' text format, for scrapers (public, like the health probes)."""

from fastapi import APIRouter, Response

from service import metrics

router = APIRouter(tags=["health"])


@router.get(
    "/metrics", response_class=Response, responses={200: {"content": {metrics.CONTENT_TYPE: {}}}}
)
def prometheus() -> Response:
    """Request counts and latencies, queue depth, model time, tokens and decisions."""
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
