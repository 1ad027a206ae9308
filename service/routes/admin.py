"""The admin API: every route here needs one of ALGOSPEAK_ADMIN_KEYS (API keys do not do)."""

from fastapi import APIRouter, Depends

from algospeak import PolicyError
from service.dependencies import PolicyDep, require_admin
from service.errors import ApiError
from service.schemas import ErrorBody, PolicyInfo

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post(
    "/policy/reload",
    response_model=PolicyInfo,
    responses={code: {"model": ErrorBody} for code in (401, 403, 409, 422)},
)
def reload_policy(policy: PolicyDep) -> PolicyInfo | None:
    """Read the policy file again and put it in force for the requests that follow. A bad
    file is refused (422, naming the problem) and the policy in force stays."""
    if policy.path is None:
        raise ApiError(409, "no policy file is configured: set ALGOSPEAK_POLICY_PATH", "no_policy")
    try:
        rules = policy.reload()
    except PolicyError as exc:
        raise ApiError(422, str(exc), "invalid_policy") from exc
    return PolicyInfo.from_rules(rules, policy.error)
