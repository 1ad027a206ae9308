"""Request dependencies: what a route may ask for, as ``Annotated`` aliases."""

from typing import Annotated

from fastapi import Depends, Request

from algospeak import Normalizer
from service.errors import ApiError
from service.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_normalizer(request: Request) -> Normalizer:
    normalizer = getattr(request.app.state, "normalizer", None)
    if normalizer is None:
        raise ApiError(503, "the service is still starting", headers={"Retry-After": "1"})
    return normalizer


SettingsDep = Annotated[Settings, Depends(get_settings)]
NormalizerDep = Annotated[Normalizer, Depends(get_normalizer)]


def checked_text(text: str, settings: Settings) -> str:
    """The text if the service accepts it; otherwise an ApiError saying why."""
    if not text.strip():
        raise ApiError(422, "text: must not be empty")
    if len(text) > settings.max_text_chars:
        raise ApiError(
            422,
            f"text: {len(text)} characters is over the limit of {settings.max_text_chars}",
            "text_too_long",
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            422, "text: contains unpaired surrogates, which are not valid Unicode"
        ) from None
    return text
