"""Properties that hold for every string: total, idempotent, spans point at the original."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from algospeak import normalize

# Pieces that exercise every path: codes, disguises, look-alikes, invisible and odd characters.
PIECES = [
    "unalive",
    "s e x",
    "S.E.G.G.S",
    "k!ll",
    "p*rn",
    "g@y",
    "corn",
    "🌽",
    "🌽\ufe0f",
    "\u200b",
    "\u200d",
    "\u202e",
    "sеx",
    "ｓｅｘ",
    "accountant",
    "spicy",
    "content",
    "grilled",
    "pdf file",
    "le$bean",
    "sewer",
    "slide",
    "seggs",
    "kys",
    "k y s",
    "kill",
    "porn",
    "🍑",
    "tax",
    "\ud800",
    "İ",
    "ß",
    "ﬁ",
    "é",
    "\u0336",
    "Ａ",
    "сех",
    "paypal",
    "http://",
    ".com",
    "@x",
    "#",
    "$",
    "0",
    "1",
    "3",
    "4",
    "|",
    "*",
    "!",
    "-",
    ".",
    "/",
    " ",
    "\n",
    "a",
    "e",
    "s",
    "x",
    "y",
    "k",
    "unaliiiive",
    "yt",
    "people",
    "snow",
    "line",
    "🏳\ufe0f\u200d🌈",
    "mys3lf",
    "st*pid",
    "l0ser",
    "regard",
    "gr8",
    "_",
    "#",
    ":",
]
texts = st.one_of(
    st.text(),
    st.lists(st.sampled_from(PIECES), max_size=14).map("".join),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=3)), max_size=10).map("".join),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_normalize_is_total_idempotent_and_spans_index_the_original(text: str) -> None:
    result = normalize(text)
    assert result.text == text
    assert result.changed == (result.normalized != text)
    previous_end = 0
    for span in result.spans:
        assert text[span.start : span.end] == span.original
        assert span.start >= previous_end, "spans overlap"
        previous_end = span.end
    for candidate in result.candidates:
        assert text[candidate.start : candidate.end] == candidate.original
    again = normalize(result.normalized)
    assert again.normalized == result.normalized, again.spans


@settings(max_examples=300, deadline=None)
@given(texts)
def test_normalize_is_deterministic(text: str) -> None:
    assert normalize(text) == normalize(text)
