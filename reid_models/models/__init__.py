"""The registered re-ID networks; importing this package fills the registry."""
from .. import generic  # noqa: F401  (the untrained default embedder, generic_mnv2_hsv)
from . import bot_r50, cbam_r50, convnext_ap, mfa_r50, nam_dyrelu_r50, osnet, resnet50, sa_r50  # noqa: F401
