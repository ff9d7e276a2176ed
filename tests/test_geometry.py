"""The coordinate convention: an identity grid must reproduce the image exactly."""

import torch

from fomm_core.geometry import keypoints_to_gaussian, make_coordinate_grid, warp


def test_identity_warp_is_exact():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 17, 23)
    grid = make_coordinate_grid(17, 23).expand(2, 17, 23, 2)
    assert torch.allclose(warp(image, grid), image, atol=1e-6)


def test_grid_corners_are_pixel_centres_and_x_first():
    grid = make_coordinate_grid(4, 5)
    assert grid.shape == (4, 5, 2)
    assert grid[0, 0].tolist() == [-1.0, -1.0] and grid[-1, -1].tolist() == [1.0, 1.0]
    assert grid[0, -1].tolist() == [1.0, -1.0]


def test_shift_by_one_pixel_moves_content_by_one_pixel():
    image = torch.zeros(1, 1, 9, 9)
    image[0, 0, 4, 4] = 1.0
    grid = make_coordinate_grid(9, 9).unsqueeze(0).clone()
    grid[..., 0] += 2.0 / 8  # sample one pixel to the right
    out = warp(image, grid)
    assert out[0, 0, 4, 3] == 1.0 and out.sum() == 1.0


def test_gaussian_peaks_at_keypoint():
    kp = torch.tensor([[[0.5, -0.5]]])
    heat = keypoints_to_gaussian(kp, 9, 9, variance=0.01)
    idx = heat[0, 0].argmax()
    assert divmod(idx.item(), 9) == (2, 6)
    assert heat[0, 0, 2, 6] == 1.0
