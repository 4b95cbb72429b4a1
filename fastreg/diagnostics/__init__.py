"""The diagnostics of the papers fastreg builds on (docs/design.md section 7), for your own models.

- :func:`output_histograms`, :func:`overlap_coefficient`, :func:`train_discriminator`
  (:mod:`.discriminator`): D's logits on real and fake samples, their histograms' overlap, and D
  training against a frozen G with a chosen variant's loss (Grewal, Hjelm, Bengio 2018).
- :func:`interpolation_profile` (:mod:`.interpolation`): D and its input gradient along
  real-fake lines (Grewal et al. 2018, fig. 3).
- :func:`vanishing_gradients` (:mod:`.vanishing`): G's gradient under a fresh D (Arjovsky &
  Bottou 2017).
- :func:`cross_test` (:mod:`.cross_test`): Roth et al. 2017's cross-testing of two models.
- :func:`diagnose` (:mod:`.report`): all of them on a trained run (``fastreg diagnose all``).
- :func:`histograms_command`, :func:`interpolation_command`, :func:`vanishing_command`,
  :func:`cross_test_command` (:mod:`.commands`): one diagnostic on a trained run, as a PNG and a
  JSON file (``fastreg diagnose histograms|interpolation|vanishing|cross-test``).

FID/KID and toy metrics live in :mod:`fastreg.metrics`.
"""

from .commands import cross_test_command, histograms_command, interpolation_command, vanishing_command
from .cross_test import Confusion, CrossTest, confusion, cross_test
from .discriminator import (RealSampler, discriminator_loss, generate, logits, output_histograms, overlap_coefficient,
                            train_discriminator)
from .interpolation import interpolation_profile
from .report import DiagnoseOptions, diagnose
from .vanishing import GradientRecord, generator_gradient_norms, vanishing_gradients

__all__ = ["Confusion", "CrossTest", "DiagnoseOptions", "GradientRecord", "RealSampler", "confusion", "cross_test",
           "cross_test_command", "diagnose", "histograms_command", "interpolation_command", "vanishing_command",
           "discriminator_loss", "generate", "generator_gradient_norms", "interpolation_profile", "logits",
           "output_histograms", "overlap_coefficient", "train_discriminator", "vanishing_gradients"]
