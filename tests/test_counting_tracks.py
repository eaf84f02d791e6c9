"""The shared tracker: positions → crossings per direction and zone occupancy."""

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.counting import CountingConfig, CountingLine, PositionCounter, TrackerConfig, Zone

ACROSS = CountingLine(start=(0.0, 0.5), end=(1.0, 0.5))  # "left" = lower half (y > 0.5)


def walk(counter, paths):
    """Run parallel paths (lists of points, None = not detected) and total the counts."""
    total_in = total_out = 0
    frames = []
    for step in zip(*paths, strict=True):
        counts = counter.step([p for p in step if p is not None])
        total_in += counts.crossed_in
        total_out += counts.crossed_out
        frames.append(counts)
    return total_in, total_out, frames


def line(y0, y1, x=0.5, n=10):
    return [(x, y0 + (y1 - y0) * i / (n - 1)) for i in range(n)]


def test_walking_down_is_in_and_walking_up_is_out():
    counter = PositionCounter(CountingConfig(line=ACROSS))
    assert walk(counter, [line(0.05, 0.95)])[:2] == (1, 0)
    counter.reset()
    assert walk(counter, [line(0.95, 0.05)])[:2] == (0, 1)


def test_in_side_right_swaps_the_directions():
    counter = PositionCounter(CountingConfig(line=ACROSS.model_copy(update={"in_side": "right"})))
    assert walk(counter, [line(0.05, 0.95)])[:2] == (0, 1)


def test_jitter_on_the_line_is_not_counted_again():
    wobble = [(0.5, y) for y in (0.1, 0.3, 0.47, 0.53, 0.48, 0.52, 0.49, 0.51, 0.7, 0.9)]
    assert walk(PositionCounter(CountingConfig(line=ACROSS)), [wobble])[:2] == (1, 0)


def test_turning_back_counts_both_ways_so_the_net_flow_is_zero():
    there_and_back = line(0.1, 0.8, n=6) + line(0.8, 0.1, n=6)
    assert walk(PositionCounter(CountingConfig(line=ACROSS)), [there_and_back])[:2] == (1, 1)


def test_a_single_frame_of_noise_is_no_person():
    blip = [None] * 4 + [(0.5, 0.6)] + [None] * 4
    counter = PositionCounter(CountingConfig(line=ACROSS))
    total_in, total_out, frames = walk(counter, [blip])
    assert (total_in, total_out) == (0, 0)
    assert all(f.present == 0 for f in frames)  # never counted as present either
    assert counter.active_tracks == 0  # forgotten after max_missing frames


def test_a_crossing_right_after_appearing_counts_once_the_track_is_confirmed():
    counter = PositionCounter(CountingConfig(line=ACROSS, tracker=TrackerConfig(min_hits=3)))
    path = [(0.5, 0.4), (0.5, 0.6), (0.5, 0.7), (0.5, 0.8)]
    total_in, _, frames = walk(counter, [path])
    assert total_in == 1
    assert [f.crossed_in for f in frames] == [0, 0, 1, 0]


def test_a_person_missed_for_two_frames_keeps_the_track():
    path = line(0.05, 0.95)
    path[4] = path[5] = None  # detector missed them right at the line
    assert walk(PositionCounter(CountingConfig(line=ACROSS)), [path])[:2] == (1, 0)


def test_two_people_side_by_side_in_opposite_directions():
    counter = PositionCounter(CountingConfig(line=ACROSS))
    down, up = line(0.05, 0.95, x=0.25), line(0.95, 0.05, x=0.75)
    total_in, total_out, frames = walk(counter, [down, up])
    assert (total_in, total_out) == (1, 1)
    assert frames[0].present == 0  # not confirmed yet: one frame could be noise
    assert all(f.present == 2 for f in frames[1:])


def test_movement_beyond_the_segment_ends_is_not_a_crossing():
    short = CountingLine(start=(0.0, 0.5), end=(0.4, 0.5))
    assert walk(PositionCounter(CountingConfig(line=short)), [line(0.05, 0.95, x=0.8)])[:2] == \
        (0, 0)
    assert walk(PositionCounter(CountingConfig(line=short)), [line(0.05, 0.95, x=0.2)])[:2] == \
        (1, 0)


def test_zones_count_people_per_frame_without_a_line():
    zones = (Zone(name="bench", rect=(0.0, 0.0, 0.5, 0.5)),
             Zone(name="door", rect=(0.5, 0.0, 1.0, 1.0)))
    counter = PositionCounter(CountingConfig(zones=zones))
    people = [(0.2, 0.2), (0.3, 0.4), (0.8, 0.9)]
    assert counter.step(people).present == 0  # first sight: not yet confirmed
    counts = counter.step(people)
    assert counts.zones == {"bench": 2, "door": 1}
    assert counts.present == 3
    assert (counts.crossed_in, counts.crossed_out) == (0, 0)


def test_counts_carry_no_positions():
    counts = PositionCounter(CountingConfig(line=ACROSS)).step([(0.123, 0.456)])
    fields = {f.name for f in dataclasses.fields(counts)}
    assert fields == {"crossed_in", "crossed_out", "present", "zones"}
    assert "0.123" not in repr(counts)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(x0=st.floats(0.05, 0.95), x1=st.floats(0.05, 0.95), y0=st.floats(0.0, 0.35),
       steps=st.integers(6, 30), down=st.booleans())
def test_any_straight_walk_across_counts_exactly_once_in_its_direction(x0, x1, y0, steps,
                                                                        down):
    y1 = 1.0 - y0
    path = [(x0 + (x1 - x0) * i / (steps - 1), y0 + (y1 - y0) * i / (steps - 1))
            for i in range(steps)]
    if not down:
        path.reverse()
    counter = PositionCounter(CountingConfig(line=ACROSS,
                                             tracker=TrackerConfig(max_step=0.5)))
    assert walk(counter, [path])[:2] == ((1, 0) if down else (0, 1))


def test_a_missed_person_is_found_further_along_their_path():
    # walker at 0.2 per frame missed for two frames: without coasting on the prediction the
    # next detection is 0.41 from where the track expects them (max_step 0.35): a new track
    path = [(0.5, 0.0), (0.5, 0.2), (0.5, 0.4), (0.5, 0.6), (0.5, 0.8), None, None, (0.5, 1.4)]
    counter = PositionCounter(CountingConfig(line=CountingLine(start=(0, 0.6), end=(1, 0.6))))
    walk(counter, [path])
    assert counter.active_tracks == 1
