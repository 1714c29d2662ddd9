"""The hyperspherical distributions as torch.distributions classes, for use outside the
VAE: ``from hyperzsl.distributions import VonMisesFisher, PowerSpherical,
HypersphericalUniform``."""
from .latent.power_spherical import PowerSpherical
from .latent.vmf import HypersphericalUniform, VonMisesFisher

__all__ = ["VonMisesFisher", "PowerSpherical", "HypersphericalUniform"]
