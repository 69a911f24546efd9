from spnas.model.space import SKIP, get_space


def test_imagenet_space_matches_released_code():
    space = get_space("imagenet")
    layers = space.layers()
    assert len(layers) == 20
    assert [l.out_channels for l in layers[::4]] == [24, 40, 80, 96, 192]
    assert [l.stride for l in layers[::4]] == [2, 2, 2, 1, 2]
    assert [l.input_size for l in layers[::4]] == [112, 56, 28, 14, 14]
    assert space.final_size() == 7
    # first layer of each stage never skippable, the other three always: 15 of 20
    assert [l.skippable for l in layers[:4]] == [False, True, True, True]
    assert sum(l.skippable for l in layers) == 15
    assert SKIP not in layers[12].candidates  # the stride-1 96-ch stage starts unskippable too
    assert layers[0].in_channels == 16
    assert space.bn_eps == 1e-3
    assert 3.0e13 < space.network_count()[0] < 3.2e13 and space.network_count()[1] == 340 ** 5


def test_small_space_keeps_a_spatial_map_and_scales_width():
    for size in (28, 32):
        space = get_space("small", input_size=size)
        assert space.final_size() >= 2
        assert space.stem_stride == 1
    half = get_space("small", width=0.5)
    full = get_space("small", width=1.0)
    assert half.layers()[-1].out_channels == 96 and full.layers()[-1].out_channels == 192


def test_fingerprint_tracks_shapes_not_names():
    a = get_space("small")
    assert a.fingerprint() == a.with_overrides(name="renamed", description="x").fingerprint()
    assert a.fingerprint() != a.with_overrides(input_size=32).fingerprint()
    assert a.fingerprint() != a.with_overrides(width=0.75).fingerprint()


def test_space_round_trips_through_dict():
    space = get_space("imagenet")
    from spnas.model.space import SearchSpace

    assert SearchSpace.from_dict(space.to_dict()) == space
