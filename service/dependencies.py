"""Request dependencies: what a route may ask for, as ``Annotated`` aliases."""

from typing import Annotated

from fastapi import Depends, Request

from algospeak import Normalizer
from service.auth import key_matches, presented_key
from service.classifier import Classifier
from service.errors import ApiError
from service.policy import PolicyHolder, Rules
from service.settings import Settings
from service.validation import text_problem


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_policy(request: Request) -> PolicyHolder:
    policy = getattr(request.app.state, "policy", None)
    if policy is None:
        raise ApiError(503, "the service is still starting", headers={"Retry-After": "1"})
    return policy


def get_rules(request: Request) -> Rules:
    """The rules in force, read once for the request (a reload meanwhile does not change them)."""
    return get_policy(request).rules


def get_normalizer(request: Request) -> Normalizer:
    """The normalizer in force: the same one /classify uses."""
    return get_rules(request).normalizer


def require_admin(request: Request) -> None:
    """Let the request through only with one of the admin keys: 403 while none is configured,
    401 without a valid one."""
    keys = [key.encode() for key in get_settings(request).admin_keys]
    if not keys:
        raise ApiError(
            403, "the admin API is off: set ALGOSPEAK_ADMIN_KEYS to enable it", "forbidden"
        )
    presented = presented_key(request.headers)
    if presented is None or not key_matches(presented, keys):
        message = (
            "the admin key is not valid"
            if presented is not None
            else "an admin key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'"
        )
        raise ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


def get_classifier(request: Request) -> Classifier:
    classifier = getattr(request.app.state, "classifier", None)
    if classifier is None:
        reason = getattr(request.app.state, "model_error", None) or "the model is still loading"
        raise ApiError(503, reason, "model_unavailable", headers={"Retry-After": "5"})
    return classifier


SettingsDep = Annotated[Settings, Depends(get_settings)]
NormalizerDep = Annotated[Normalizer, Depends(get_normalizer)]
PolicyDep = Annotated[PolicyHolder, Depends(get_policy)]
RulesDep = Annotated[Rules, Depends(get_rules)]
ClassifierDep = Annotated[Classifier, Depends(get_classifier)]


def checked_text(text: str, settings: Settings, field: str = "text") -> str:
    """The text if the service accepts it; otherwise an ApiError naming ``field`` and why."""
    problem = text_problem(text, settings.max_text_chars, field)
    if problem is not None:
        raise ApiError(422, problem.message, problem.type)
    return text


def checked_batch(texts: list[str], settings: Settings, field: str) -> list[str]:
    """A non-empty batch within the configured size, every text accepted."""
    if not texts:
        raise ApiError(422, f"{field}: must hold at least one text")
    if len(texts) > settings.max_batch:
        raise ApiError(
            413, f"{field}: {len(texts)} texts is over the batch limit of {settings.max_batch}"
        )
    return [checked_text(t, settings, f"{field}[{i}]") for i, t in enumerate(texts)]
