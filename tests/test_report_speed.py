"""The fast report's pieces: the jitterplot raster, the reused figure, reduced-size top images, the top rows."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from selectivity_eval.core.report import plots
from selectivity_eval.core.report.dataset_images import top_rows
from selectivity_eval.core.report.jitter_figure import AXES_PX, JitterFigure, nth_highest, value_limits
from selectivity_eval.core.report.jitter_raster import jitter_raster, marker_disc, pixel_positions
from selectivity_eval.core.report.thumbnails import TILE, file_tile, tile_size

RED = "#d62728"


def test_the_raster_puts_each_point_at_its_class_column_and_value_row():
    shape = (100, 200)
    xlim, ylim = (-0.5, 9.5), (0.0, 10.0)
    x = np.array([7.0, 2.0])
    y = np.array([9.0, 1.0])
    rows, columns = pixel_positions(x, y, xlim, ylim, shape[1], shape[0])
    np.testing.assert_array_equal(rows, [10, 90])  # (10 - 9) / 10 * 100 from the top; (10 - 1) / 10 * 100
    np.testing.assert_array_equal(columns, [150, 50])  # (7 + 0.5) / 10 * 200; (2 + 0.5) / 10 * 200
    raster = jitter_raster(x, y, [(np.array([False, True]), "#8c8c8c", 0.5), (np.array([True, False]), RED, 0.8)],
                           xlim, ylim, shape, diameter=2.4)
    assert raster.shape == (100, 200, 4) and raster.dtype == np.uint8
    assert tuple(raster[10, 150]) == (214, 39, 40, 204)  # the top class's red at alpha 0.8, wholly covered
    assert tuple(raster[90, 50]) == (140, 140, 140, 128)  # the others' grey at alpha 0.5
    painted = np.argwhere(raster[..., 3] > 0)
    near = np.minimum(np.abs(painted - [10, 150]).max(axis=1), np.abs(painted - [90, 50]).max(axis=1))
    assert len(painted) > 2 and near.max() == 1  # each marker: its pixel and part of the ones around it
    assert raster[9, 150, 3] < 204 and raster[8, 150, 3] == 0


def test_overlapping_points_add_up_like_stacked_transparent_markers():
    shape = (20, 20)
    x, y = np.full(3, 5.0), np.full(3, 5.0)
    raster = jitter_raster(x, y, [(np.ones(3, bool), "#000000", 0.5)], (0, 10), (0, 10), shape, diameter=2.4)
    assert raster[10, 10, 3] == round(255 * (1 - 0.5**3))
    disc = marker_disc(4.39)
    assert disc.shape == (5, 5) and disc[2, 2] == 1 and disc[0, 0] == 0 and 0 < disc[0, 2] < 1


def test_the_top_activation_is_red_at_its_row_in_the_saved_figure(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(40), 50)
    values = rng.random(2000)
    values[1234] = 3.0  # class 24's image, far above the rest
    figure = plots.jitterplot(values, labels, [f"c{i}" for i in range(40)], title="u", seed=[0, 0, 0], top_n=(10,))
    path = plots.save(figure, tmp_path / "u", ["png"])[0]
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    left, bottom, width, height = AXES_PX
    low, high = value_limits(values)
    row = 280 - bottom - height + int((high - 3.0) / (high - low) * height)
    column = left + int((24 + 0.6) / 40 * width)  # the class's column, give or take the jitter (0.38 of a class)
    window = pixels[row - 2: row + 3, column - 3: column + 4]
    reddish = (window[..., 0] > 150) & (window[..., 1] < 120) & (window[..., 2] < 120)
    assert reddish.any(), "the highest activation should be a red point at its value's row and its class's column"
    above = pixels[280 - bottom - height: row - 4, left: left + width]
    assert not ((above[..., 0] > 150) & (above[..., 1] < 120)).any(), "nothing red above the highest activation"


def test_a_reused_figure_gives_the_same_bytes_as_a_fresh_one(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 50, 3000)
    names = [f"class {i}" for i in range(50)]
    first, second = rng.random(3000), rng.normal(size=3000) + 5 * (labels == 7)
    reused = JitterFigure(names)
    plots.save(reused.draw(first, labels, title="a", seed=[0, 1], top_n=(100, 50)), tmp_path / "a", ["png", "svg"])
    plots.save(reused.draw(second, labels, title="b", seed=[0, 2], top_n=(100,)), tmp_path / "reused", ["png", "svg"])
    fresh = plots.jitterplot(second, labels, names, title="b", seed=[0, 2], top_n=(100,))
    plots.save(fresh, tmp_path / "fresh", ["png", "svg"])
    for suffix in (".png", ".svg"):
        assert (tmp_path / f"reused{suffix}").read_bytes() == (tmp_path / f"fresh{suffix}").read_bytes()
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "fresh.png").read_bytes()
    assert b"<image" in (tmp_path / "fresh.svg").read_bytes()  # the points, as one embedded image


def test_the_figure_takes_the_same_time_for_many_images_as_for_few(tmp_path):
    import time

    rng = np.random.default_rng(3)
    names = [f"n{i:08d}" for i in range(1000)]
    figure = JitterFigure(names)
    seconds = {}
    for n in (2_000, 200_000):
        labels, values = rng.integers(0, 1000, n), rng.random(n)
        plots.save(figure.draw(values, labels, title="warm", seed=[0], top_n=(100,)), tmp_path / "w", ["png"])
        started = time.perf_counter()
        for repeat in range(3):
            plots.save(figure.draw(values, labels, title="t", seed=[repeat], top_n=(100,)), tmp_path / "t", ["png"])
        seconds[n] = time.perf_counter() - started
    assert seconds[200_000] < 3 * seconds[2_000] + 0.5, seconds  # a scatter would take about 100x longer


def test_top_rows_are_the_highest_first_with_ties_by_lower_position():
    values = np.array([1.0, 5.0, 3.0, 5.0, 2.0, 3.0, 3.0])
    np.testing.assert_array_equal(top_rows(values, 4), [1, 3, 2, 5])
    np.testing.assert_array_equal(top_rows(values, 7), [1, 3, 2, 5, 6, 4, 0])
    rng = np.random.default_rng(4)
    many = rng.integers(0, 30, 5000).astype(float)
    for k in (1, 9, 100):
        np.testing.assert_array_equal(top_rows(many, k), np.argsort(-many, kind="stable")[:k])
    assert nth_highest(values, 3) == 3.0 and nth_highest(values, 100) == 1.0


def _jpeg(tmp_path, size, name="image.jpg"):
    rng = np.random.default_rng(5)
    coarse = rng.integers(0, 256, size=(6, 6, 3)).astype(np.uint8)
    image = Image.fromarray(coarse).resize(size, Image.BICUBIC)
    path = tmp_path / name
    image.save(path, quality=90)
    return path


@pytest.mark.parametrize("size", [(500, 375), (301, 460), (72, 40), (40, 30)])
def test_a_reduced_size_decode_gives_the_tile_a_full_decode_would(tmp_path, size):
    from selectivity_eval.core.report.thumbnails import resize_to_tile

    path = _jpeg(tmp_path, size)
    tile = file_tile(str(path), max_pixels=10**8)
    with Image.open(path) as full:
        expected = resize_to_tile(full.convert("RGB"))
    assert tile.size == expected.size == tile_size(*size) and max(tile.size) == TILE
    difference = np.abs(np.asarray(tile, int) - np.asarray(expected, int))
    assert difference.mean() < 3 and np.percentile(difference, 99) < 25, (difference.mean(), difference.max())


def test_a_tile_is_none_for_an_unreadable_or_too_large_file_and_tiles_are_made_once(tmp_path):
    from types import SimpleNamespace

    from selectivity_eval.core.report.thumbnails import Tiles
    from selectivity_eval.plugins.datasets.image_files import ImageFiles

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    good = _jpeg(tmp_path, (400, 300))
    assert file_tile(str(broken), 10**8) is None
    assert file_tile(str(good), max_pixels=400 * 300 - 1) is None
    tiles = Tiles(SimpleNamespace(dataset=ImageFiles([str(good), str(broken)], [0, 1])))
    assert tiles.files and tiles(0) is tiles(0) and tiles(1) is None
    buffer = io.BytesIO()
    tiles(0).save(buffer, format="png")
    assert Image.open(buffer).size == (72, 54)


def test_a_silent_unit_still_gets_a_plot_with_room_around_its_one_value(tmp_path):
    low, high = value_limits(np.zeros(10))
    assert low < 0 < high
    low, high = value_limits(np.full(10, 2.0))
    assert low < 2.0 < high
    figure = plots.jitterplot(np.full(30, 2.0), np.arange(30) % 3, ["a", "b", "c"], title="silent", seed=[0])
    assert plots.save(figure, tmp_path / "silent", ["png"])[0].is_file()


def test_the_pinned_title_sits_where_matplotlib_would_place_it(monkeypatch):
    from matplotlib.axes import Axes

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 20, 2000)
    names = [f"class {i}" for i in range(20)]
    long_title = "features.denseblock4.denselayer16.conv2.weighted, unit 1023"
    cases = [(rng.random(2000), "fc6, unit 3"), (rng.random(2000) * 1e-7, long_title),  # 1e-7: an offset text
             (rng.random(2000) + 1000, long_title)]

    def png(figure) -> bytes:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()

    reused = JitterFigure(names)
    pinned = [png(reused.draw(values, labels, title=title, seed=[0, 1], top_n=(50,))) for values, title in cases]
    placing = Axes.set_title
    monkeypatch.setattr(Axes, "set_title", lambda axes, label, **options: placing(axes, label))  # matplotlib's search
    searched = [png(JitterFigure(names).draw(values, labels, title=title, seed=[0, 1], top_n=(50,)))
                for values, title in cases]
    assert pinned == searched
