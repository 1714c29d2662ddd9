"""The hyperspherical distributions as torch.distributions classes, for use outside the
VAE: ``from hyperzsl.distributions import VonMisesFisher, PowerSpherical,
HypersphericalUniform``."""
from .latent.power_spherical import PowerSpherical
from .latent.sphere import HypersphericalUniform
from .latent.von_mises_fisher import VonMisesFisher

__all__ = ["VonMisesFisher", "PowerSpherical", "HypersphericalUniform"]
