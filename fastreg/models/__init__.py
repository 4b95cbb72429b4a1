"""Networks: DCGAN, ResNet and MLP generators/discriminators, a transformer discriminator, the Tempered lens, VRAL's
meta-discriminators. Every discriminator returns logits ``[N]`` with no output nonlinearity;
every generator maps ``z [N, z_dim]`` to samples (``G.z_dim`` says the latent size).
"""

from .dcgan import RESOLUTIONS, DCGANDiscriminator, DCGANGenerator, dcgan_init_
from .lens import Lens
from .mlp import MLPDiscriminator, MLPGenerator
from .parameters import count_parameters, has_batch_norm
from .resnet import ResNetDiscriminator, ResNetGenerator
from .transformer import TransformerDiscriminator
from .vral import MetaDiscriminator, make_meta_discriminators

__all__ = ["RESOLUTIONS", "DCGANDiscriminator", "DCGANGenerator", "Lens", "MLPDiscriminator", "MLPGenerator",
           "MetaDiscriminator", "ResNetDiscriminator", "ResNetGenerator", "TransformerDiscriminator",
           "count_parameters", "dcgan_init_", "has_batch_norm", "make_meta_discriminators"]
