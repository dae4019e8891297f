"""The image generator of CI-Net and its over-parameterisation rule.

Zhang et al., "Generative Gradient Inversion via Over-Parameterized Networks in Federated Learning",
ICCV 2023 (code: github czhang024/CI-Net, ``model/generator.py``). The architecture as described
there: a transposed convolution maps each latent vector (``latent_dim`` × 1 × 1) to a 4 × 4 map of
``width`` channels (batch norm, leaky ReLU 0.1); then one block per resolution 4, 8, 16, ...
(nearest-neighbour ×2 up-sampling before every block but the first), each block two 3 × 3
spectrally normalised convolutions, each followed by batch norm and leaky ReLU 0.1; a 1 × 1
convolution to the image channels and ``tanh``. Blocks keep ``width`` channels up to 32 × 32, use
``width/2`` at 64 × 64 and ``width/4`` from 128 × 128 on (the authors' schedule up to 256 × 256,
continued at ``width/4`` above it).

Spectral normalisation: the weight is divided by its largest singular value, estimated by one
power-iteration step per forward pass from a stored left singular vector ``u`` (Miyato et al.,
"Spectral Normalization for Generative Adversarial Networks", ICLR 2018; the BigGAN variant the
authors use): ``v = n(u W)``, ``u ← n(v Wᵀ)``, ``σ = v Wᵀ uᵀ`` with ``u``, ``v`` held constant for
the gradient.

Sizes the authors do not build. Their generator only produces 32 × 32 and 128/256 × 256 RGB images.
Here the stack runs up to ``R``, the smallest ``4·2^k`` that is at least the image's longer side, and
the ``R × R`` output is centre-cropped (``fit="crop"``) or bilinearly resized (``fit="resize"``) to
the image's ``H × W``; the last convolution produces the data's channels (1 for MNIST). So MNIST's
28 × 28 is a crop of 32 × 32, ImageNet's 224 × 224 a crop of 256 × 256, 720 × 720 a crop of
1024 × 1024.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEAK = 0.1  # leaky ReLU slope of the authors' generator


class SNConv2d(nn.Conv2d):
    """A convolution whose weight is divided by its spectral norm (one power step per forward)."""

    def __init__(self, *args, eps: float = 1e-12, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = eps
        self.register_buffer("u", torch.randn(1, self.out_channels, device=self.weight.device,
                                              dtype=self.weight.dtype))

    def normalized_weight(self) -> Tensor:
        w = self.weight.reshape(self.weight.shape[0], -1)
        with torch.no_grad():
            v = F.normalize(self.u @ w, eps=self.eps)
            u = F.normalize(v @ w.T, eps=self.eps)
            if self.training:
                self.u.copy_(u)
        sigma = (v @ w.T @ u.T).squeeze()
        return self.weight / sigma

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


class Block(nn.Module):
    """Two spectrally normalised 3 × 3 convolutions, each with batch norm and leaky ReLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = SNConv2d(c_in, c_out, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = SNConv2d(c_out, c_out, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        x = F.leaky_relu(self.bn1(self.conv1(x)), LEAK)
        return F.leaky_relu(self.bn2(self.conv2(x)), LEAK)


def top_resolution(height: int, width: int) -> int:
    """The smallest ``4·2^k`` at least as large as the image's longer side."""
    side = max(int(height), int(width))
    if side < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    return 4 * 2 ** max(0, math.ceil(math.log2(side / 4)))


def block_channels(width: int, resolution: int) -> int:
    """Channels of the block working at ``resolution`` (the authors' schedule, see module doc)."""
    if resolution <= 32:
        return width
    if resolution == 64:
        return max(1, width // 2)
    return max(1, width // 4)


class CINetGenerator(nn.Module):
    """Latents ``(B, latent_dim)`` -> images ``(B, channels, H, W)`` in ``[-1, 1]`` (``tanh``)."""

    def __init__(self, image_shape: tuple[int, int, int], width: int, latent_dim: int = 128,
                 fit: str = "crop"):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"CI-Net's generator makes (channels, H, W) images, got shape {tuple(image_shape)}")
        if fit not in ("crop", "resize"):
            raise ValueError(f"fit must be crop or resize, got {fit!r}")
        self.channels, self.height, self.width_px = (int(v) for v in image_shape)
        self.latent_dim = int(latent_dim)
        self.fit = fit
        self.resolution = top_resolution(self.height, self.width_px)
        self.stem = nn.ConvTranspose2d(self.latent_dim, width, 4, 1, 0)
        self.stem_bn = nn.BatchNorm2d(width)
        blocks, c_in, res = [], width, 4
        while res <= self.resolution:
            c_out = block_channels(width, res)
            blocks.append(Block(c_in, c_out))
            c_in, res = c_out, res * 2
        self.blocks = nn.ModuleList(blocks)
        self.to_image = nn.Conv2d(c_in, self.channels, 1)

    def forward(self, z: Tensor) -> Tensor:
        x = F.leaky_relu(self.stem_bn(self.stem(z.reshape(-1, self.latent_dim, 1, 1))), LEAK)
        for i, block in enumerate(self.blocks):
            if i:
                x = F.interpolate(x, scale_factor=2)  # nearest neighbour, as the authors
            x = block(x)
        x = torch.tanh(self.to_image(x))
        if (self.height, self.width_px) == (x.shape[-2], x.shape[-1]):
            return x
        if self.fit == "resize":
            return F.interpolate(x, size=(self.height, self.width_px), mode="bilinear",
                                 align_corners=False, antialias=True)
        top = (x.shape[-2] - self.height) // 2
        left = (x.shape[-1] - self.width_px) // 2
        return x[..., top:top + self.height, left:left + self.width_px]


def generator_params(image_shape, width: int, latent_dim: int = 128) -> int:
    """Parameter count of the generator of ``width`` (built on the meta device: no memory)."""
    with torch.device("meta"):
        gen = CINetGenerator(tuple(image_shape), width, latent_dim)
    return sum(p.numel() for p in gen.parameters())


def over_parameterized_width(batch_size: int, image_shape, latent_dim: int = 128, start: int = 32,
                             factor: float = 4.0, max_width: int = 1 << 16) -> tuple[int, int]:
    """The authors' rule: start at ``start`` channels and double until the generator has more than
    ``factor`` × the batch's pixels (``B·H·W``) parameters. Returns ``(width, parameter count)``.

    The authors count the parameters of their 32 × 32 RGB generator whatever the image size; this
    counts the generator actually built for ``image_shape`` (the same one for 32 × 32 RGB images).
    """
    pixels = int(batch_size) * int(image_shape[-2]) * int(image_shape[-1])
    width = int(start)
    while True:
        n = generator_params(image_shape, width, latent_dim)
        if n > factor * pixels:
            return width, n
        if width >= max_width:
            raise ValueError(f"no generator width up to {max_width} exceeds {factor} x {pixels} pixels")
        width *= 2


__all__ = ["CINetGenerator", "SNConv2d", "generator_params", "over_parameterized_width", "top_resolution"]
