"""Faster rewrites of hot functions agree with the slow originals they replaced, kept here
as references: on generated inputs built from the characters that matter."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentstage.publishing import _json_depth


def _json_depth_by_characters(text: str) -> int:
    """The reference: the character-by-character reading _json_depth replaced."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


@settings(max_examples=2000, deadline=None)
@given(text=st.text(alphabet='[]{}"\\ax,:', max_size=60))
def test_json_depth_agrees_with_reading_each_character(text: str) -> None:
    assert _json_depth(text) == _json_depth_by_characters(text)


def test_json_depth_agrees_on_records() -> None:
    rng = random.Random(7)
    for _ in range(200):
        value: Any = rng.choice(["x", 1, None])
        for _ in range(rng.randrange(25)):
            value = [value] if rng.random() < 0.5 else {"k\\\"[{": value, "s": "]}\"\\"}
        text = json.dumps(value)
        assert _json_depth(text) == _json_depth_by_characters(text)
        cut = text[:rng.randrange(len(text) + 1)]
        assert _json_depth(cut) == _json_depth_by_characters(cut)


def _split_by_lines(data: bytes) -> tuple[bytes, bytes]:
    """The reference: the line walk signing.split_signature replaced."""
    from agentstage.signing import SIGNATURE_STARTS

    start = len(data)
    position = 0
    while position < len(data):
        if data.startswith(tuple(m.encode() for m in SIGNATURE_STARTS), position):
            start = position
        newline = data.find(b"\n", position)
        position = len(data) if newline < 0 else newline + 1
    return data[:start], data[start:]


@settings(max_examples=3000, deadline=None)
@given(parts=st.lists(st.sampled_from([
    b"-----BEGIN PGP SIGNATURE-----", b"-----BEGIN SSH SIGNATURE-----", b"-----BEGIN ",
    b"-----BEGIN PGP MESSAGE-----", b"-----BEGIN SIGNED MESSAGE-----", b"\n", b"x", b"-",
    b"-----BEGIN X-----", b" "]), max_size=12))
def test_split_signature_agrees_with_walking_the_lines(parts: list[bytes]) -> None:
    from agentstage.signing import split_signature

    data = b"".join(parts)
    assert split_signature(data) == _split_by_lines(data)
