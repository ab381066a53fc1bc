import pytest

from desktop.engine.request import GenerationRequest, InvalidRequest, parse_size


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(width=65), "multiple of 8"),
        (dict(height=100), "multiple of 8"),
        (dict(width=56), "from 64 to 2048"),
        (dict(height=2056), "from 64 to 2048"),
        (dict(steps=0), "Steps"),
        (dict(steps=151), "Steps"),
        (dict(steps=2.5), "Steps"),
        (dict(guidance=-0.5), "Guidance"),
        (dict(guidance=30.5), "Guidance"),
        (dict(seed=-1), "Seed"),
        (dict(seed=2**64), "Seed"),
        (dict(count=0), "count"),
        (dict(scheduler="Magic"), "Unknown scheduler"),
        (dict(scheduler=3), "Sampler"),
        (dict(prompt=None), "text"),
        (dict(model=5), "Model"),
    ],
)
def test_invalid_requests_say_what_is_wrong(fields, message):
    request = GenerationRequest(**fields)  # building one never validates: records hold what files say
    with pytest.raises(InvalidRequest, match=message):
        request.validated()


def test_edges_are_allowed():
    for request in (GenerationRequest(width=64, height=2048, steps=1, guidance=0, seed=0),
                    GenerationRequest(width=2048, height=64, steps=150, guidance=30, seed=2**64 - 1)):
        assert request.validated() == request


def test_with_seed_fixes_a_random_seed_once():
    fixed = GenerationRequest("x").with_seed()
    assert isinstance(fixed.seed, int) and 0 <= fixed.seed < 2**32  # new seeds stay shareable with A1111
    assert fixed.with_seed() == fixed and GenerationRequest(seed=7).with_seed().seed == 7


def test_keep_valid_drops_only_what_is_out_of_range():
    raw = GenerationRequest("a cat", "blurry", steps=500, guidance=7.0, width=1003, height=512, seed=3,
                            scheduler="euler a", model="sd15")
    request, dropped = raw.keep_valid()
    assert dropped == ["steps", "width"]
    assert request == GenerationRequest("a cat", "blurry", guidance=7.0, height=512, seed=3, scheduler="Euler a",
                                        model="sd15")


def test_round_trip_through_dict():
    req = GenerationRequest("a, b: c\n", "neg", 20, 7.5, 512, 768, 42, "Euler a", 2, "m")
    assert GenerationRequest.from_dict(req.to_dict() | {"unknown": 1}) == req


def test_seeds_are_64_bit_and_wrap_there():
    assert GenerationRequest(seed=2**64 - 1, count=3).seeds() == [2**64 - 1, 0, 1]
    assert GenerationRequest(seed=2**32, count=2).seeds() == [2**32, 2**32 + 1]  # no 32-bit wrap any more


@pytest.mark.parametrize("text, expected", [("512x768", (512, 768)), ("640", (640, 640)), (" 64 X 128 ", (64, 128))])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


def test_parse_size_rejects_garbage():
    with pytest.raises(InvalidRequest):
        parse_size("big")
