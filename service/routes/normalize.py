"""POST /normalize: decode algospeak and report what changed."""

from fastapi import APIRouter

from service.dependencies import NormalizerDep, SettingsDep, checked_text
from service.schemas import ErrorBody, NormalizeRequest, NormalizeResponse

router = APIRouter(tags=["normalize"])


@router.post(
    "/normalize",
    response_model=NormalizeResponse,
    responses={400: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def normalize(
    body: NormalizeRequest, normalizer: NormalizerDep, settings: SettingsDep
) -> NormalizeResponse:
    result = normalizer.normalize(checked_text(body.text, settings))
    return NormalizeResponse.model_validate(result, from_attributes=True)
