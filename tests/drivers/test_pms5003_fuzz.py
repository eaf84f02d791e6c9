"""Property-based fuzzing of the PMS5003 parser (hypothesis, 10 000 examples each).

Each example is a list of (kind, seed) pairs; the bytes are made from the seed, which keeps
generation cheap enough for 10 000 examples in a few seconds. The two properties run on the
32-byte PMS5003 layout (parser without a model) and on the 40-byte PMS5003ST layout (parser
configured for it). The PMS5003T layout is not fuzzed here: each property costs ~15 s, and the
file is kept under ~60 s; its decoding is covered by the unit tests.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.driver import FrameError
from edgeagent.drivers.pms5003 import Pms5003Frame, Pms5003Parser, decode_frame
from edgeagent.drivers.sim.pms5003 import Pms5003Simulator

KINDS = ("frame", "garbage", "flipped", "truncated")
pieces = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 2**32)), min_size=1,
                  max_size=6)


def plausible_frame(rng: random.Random) -> bytes:
    """Cumulative counts, PM1 <= PM2.5 <= PM10 within range, at least one particle."""
    def mass() -> tuple[int, ...]:
        return tuple(sorted(rng.randint(0, 2000) for _ in range(3)))

    counts = tuple(sorted((rng.randint(1, 0xFFFF) for _ in range(6)), reverse=True))
    return Pms5003Simulator.encode_frame(mass(), mass(), counts,
                                         reserved=rng.randint(0, 0xFFFF))


def plausible_st_frame(rng: random.Random) -> bytes:
    """As plausible_frame, on the PMS5003ST layout: any s16 temperature, RH 0 … 100.0 %.

    getrandbits instead of randint keeps it cheap (clamping also hits the range ends often).
    """
    bits = rng.getrandbits

    def mass() -> tuple[int, ...]:
        return tuple(sorted(min(bits(11), 2000) for _ in range(3)))

    counts = tuple(sorted((max(bits(16), 1) for _ in range(6)), reverse=True))
    return Pms5003Simulator.encode_variant(
        "pms5003st", mass(), mass(), counts, reserved=bits(16), temperature=bits(16) - 0x8000,
        humidity=min(bits(10), 1000), hcho=bits(16))


LAYOUTS = {None: plausible_frame, "pms5003st": plausible_st_frame}


def build(kind: str, seed: int, model: str | None = None) -> bytes:
    rng = random.Random(seed)
    frame = LAYOUTS[model](rng)
    if kind == "frame":
        return frame
    if kind == "garbage":
        return rng.randbytes(rng.randint(0, 80))
    if kind == "flipped":
        bit = rng.randrange(len(frame) * 8)
        flipped = bytearray(frame)
        flipped[bit // 8] ^= 1 << (bit % 8)
        return bytes(flipped)
    return frame[:rng.randint(1, len(frame) - 1)]


def frames_of(items: list) -> list[Pms5003Frame]:
    assert all(isinstance(item, Pms5003Frame | FrameError) for item in items)
    return [item for item in items if isinstance(item, Pms5003Frame)]


def decode(raw: bytes, model: str | None = None) -> Pms5003Frame:
    if model is not None:
        # the expected values straight from the layout, ~10x cheaper than a parser (keeps the
        # file under ~60 s); the properties still check that the parser yields exactly these
        return decode_frame(raw, model)
    (item,) = Pms5003Parser(model).feed(raw, 0.0)
    assert isinstance(item, Pms5003Frame)
    return item


def check_pieces_with_pauses(spec, model: str | None) -> None:
    parser, out = Pms5003Parser(model), []
    for index, (kind, seed) in enumerate(spec):
        out += parser.feed(build(kind, seed, model), now=float(index))
    out += parser.feed(b"", now=len(spec) + 1.0)  # the stall check flushes a dangling tail
    expected = [decode(build(kind, seed, model), model) for kind, seed in spec if kind == "frame"]
    assert frames_of(out) == expected


def check_one_unbroken_stream(spec, cut: int, model: str | None) -> None:
    data = [build(kind, seed, model) for kind, seed in spec]
    stream = b"".join(data)
    parser, out = Pms5003Parser(model), []
    for start in range(0, len(stream), cut):
        out += parser.feed(stream[start:start + cut], now=0.0)
    sent = [decode(d, model) for (kind, _), d in zip(spec, data, strict=True) if kind == "frame"]
    # a frame cut short by exactly its last checksum byte, followed by the next frame's 0x42,
    # passes sum16 one time in 256: its values are then the sensor's genuine ones
    genuine = sent + [decode(build("frame", seed, model), model)
                      for kind, seed in spec if kind == "truncated"]
    got = frames_of(out)
    assert all(frame in genuine for frame in got)
    # a frame right after another valid frame can never be swallowed
    for (kind, _), (prev, _) in zip(spec[1:], spec, strict=False):
        if kind == prev == "frame":
            assert len(got) >= 2


@settings(max_examples=10_000, deadline=None)
@given(pieces)
def test_pieces_with_pauses_yield_exactly_the_valid_frames(spec):
    """Pieces arrive with > 0.5 s between them: every valid frame, and only those, comes out."""
    check_pieces_with_pauses(spec, None)


@settings(max_examples=10_000, deadline=None)
@given(pieces, st.integers(1, 40))
def test_one_unbroken_stream_yields_only_frames_that_were_sent(spec, cut):
    """All pieces glued together, read in arbitrary chunks: nothing invented, nothing lost
    that arrived intact after a complete piece."""
    check_one_unbroken_stream(spec, cut, None)


@settings(max_examples=10_000, deadline=None)
@given(pieces)
def test_5003st_pieces_with_pauses_yield_exactly_the_valid_frames(spec):
    """The first property on the 40-byte PMS5003ST layout, parser configured for it."""
    check_pieces_with_pauses(spec, "pms5003st")


@settings(max_examples=10_000, deadline=None)
@given(pieces, st.integers(1, 48))
def test_5003st_one_unbroken_stream_yields_only_frames_that_were_sent(spec, cut):
    """The second property on the 40-byte PMS5003ST layout, parser configured for it."""
    check_one_unbroken_stream(spec, cut, "pms5003st")
