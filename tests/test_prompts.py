"""prompts: the one prompt type and its one check, used by predictor, session and annotation files."""

from __future__ import annotations

import numpy as np
import pytest

from sam_widgets.prompts import Prompt


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Prompt(points=((1, 2), (3, 4)), labels=(1,)), "2 points but 1 labels"),
        (lambda: Prompt(), "neither points nor a box"),
        (lambda: Prompt(points=((1, 2),), labels=(2,)), "1 \\(positive\\) or 0"),
        (lambda: Prompt(box=(5, 0, 1, 3)), "not XYXY"),
        (lambda: Prompt.from_arrays(np.zeros(2), np.ones(1)), "Nx2"),
        (lambda: Prompt.from_arrays(np.zeros((1, 2))), "point_labels must be supplied"),
        (lambda: Prompt.from_arrays(None, np.ones(1)), "without point_coords"),
        (lambda: Prompt.from_arrays(box=np.zeros(3)), "4 numbers"),
        (
            lambda: Prompt(points=((11, 2),), labels=(1,)).check(10, 10, "cat.png"),
            "outside the 10x10 image 'cat.png'",
        ),
        (lambda: Prompt(points=((np.nan, 2),), labels=(1,)).check(10, 10), "NaN.*outside"),
        (lambda: Prompt(box=(0, 0, 5, 11)).check(10, 10), "reaches outside the 10x10 image"),
        (lambda: Prompt(box=(0, 0, 5, np.inf)).check(10, 10), "NaN or infinite"),
    ],
)
def test_bad_prompts_are_refused_with_the_reason(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_prompt_round_trips_through_predict_arguments():
    p = Prompt.from_arrays(np.array([[1.5, 2.0]]), np.array([0]), np.array([[0, 0, 10, 10]]))
    assert p == Prompt(points=((1.5, 2.0),), labels=(0,), box=(0.0, 0.0, 10.0, 10.0))
    assert p.check(10, 10) is p  # edges are inside
    kw = p.predict_kwargs()
    assert kw["point_coords"].shape == (1, 2) and kw["point_labels"].tolist() == [0]
    assert kw["box"].tolist() == [0, 0, 10, 10]
    assert Prompt.from_arrays() is None  # no point, no box: nothing to check (a mask prompt alone)


def test_session_and_predictor_say_the_same(tiny_sam, rgb_image):
    from sam_widgets import CachedPredictor, Session

    predictor = CachedPredictor(tiny_sam)
    predictor.set_image(rgb_image)
    h, w = rgb_image.shape[:2]
    with pytest.raises(ValueError) as from_predictor:
        predictor.predict(point_coords=np.array([[w + 1.0, 1.0]]), point_labels=np.array([1]))
    session = Session([rgb_image], predictor, names=["one"])
    with pytest.raises(ValueError) as from_session:
        session.add_point(w + 1.0, 1.0)
    assert str(from_session.value) == str(from_predictor.value).replace("image;", "image 'one';")
