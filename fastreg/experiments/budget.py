"""How big each experiment is: one :class:`Scale` object, so tiny (tests), quick, cpu and full (the
papers' budgets, for a GPU) runs share every line of the experiments' code. :data:`SCALES` is the table the
CLI's ``--scale`` reads.

Full budgets (source papers): Roth et al. train DCGANs for 100k+ iterations at batch 64 and their
toy MLPs for 100k (their 3-D toy script); Arjovsky & Bottou freeze G after 1, 10 and 25 epochs and train a
fresh D for 4,000 iterations; Grewal et al. train at 50:1 and train a fixed G (LSGAN) for 5 epochs before
training D against it; Sajjadi et al. anneal the lens over K = 10k steps in all their experiments (the paper's
text and its Fig. 2 caption), well inside their runs. The full
scale follows those orders of magnitude at 32x32.

The cpu scale (about an hour for the whole suite on a shared 2-core CPU, measured in docs/results-cpu.md) is
sized so that the claims that can be reached on a CPU are: the toy at 12k steps (the authors' 3-D script with
z 2, minimax G loss, truncated-normal init: all modes within ~10k steps), the fresh D at the paper's 4,000 steps,
the cross-test at 10,000 steps (at 3,000 the unregularized D with batch norm still called 24% of its own
fakes real; at 10,000 each D rejects them), the lens schedule over a quarter of the run.
Roth's stability claim needs a setting where the unregularized GAN fails (32/64 px, 100k steps): only the full
scale can get there. The quick scale is a smaller smoke run of the same protocol (minutes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Scale:
    name: str
    image_steps: int                 # generator steps of an image run
    toy_steps: int                   # generator steps of a toy MLP run
    resolution: int                  # image side
    width: int                       # channel width C of G and D (architectures scale it)
    eval_points: int                 # evaluations per run (the last at the final step)
    eval_samples: int                # generated samples per FID evaluation
    extractor: str                   # FID features ("auto": the dataset's classifier, or Inception)
    seeds: tuple[int, ...]           # seeds of the multi-seed experiments (single-seed ones take the first)
    architectures: tuple[str, ...]   # roth-stability
    methods: tuple[str, ...]         # roth-stability: methods of roth.METHODS trained on each architecture
    noise_levels: tuple[float, ...]  # explicit-noise: sigma of the explicit instance noise
    critic_g_steps: int              # vral: generator steps at 50:1
    critic_ratio: int                # vral: D steps per G step (50 in Grewal et al.)
    fixed_g_d_steps: int             # vral: D steps against a fixed generator
    fixed_g_epochs: int              # vral: epochs of LSGAN training of the fixed generator (5 in Grewal et al.)
    epochs: tuple[int, ...]          # arjovsky-vanishing: G training epochs before freezing
    epoch_steps: int | None          # steps per epoch (None: one pass over the dataset)
    fresh_d_steps: int               # arjovsky-vanishing: D steps of the fresh D
    record_every: int                # arjovsky-vanishing: record interval (D steps)
    probe_batches: int               # arjovsky-vanishing: latent batches per gradient record (>= 10 for variances)
    cross_steps: int                 # roth-cross-test: generator steps of each model
    cross_samples: int               # roth-cross-test: generated samples per model
    hist_samples: int                # vral: samples per histogram side
    toy_samples: int                 # roth-toy: samples for modes covered and W1
    lens_width: int                  # tempered: channels of the lens's residual blocks
    lens_k: int | None               # tempered: lens schedule length K (None: a quarter of the run)
    tempered_steps: int              # tempered: generator steps of each run
    grid_steps: int                  # roth-stability-grid: generator steps of each run
    grid_cells: int | None           # roth-stability-grid: the first N cells of the declared grid (None: all 18)
    stacked_steps: int               # stacked-mnist: generator steps of each run
    mode_samples: int                # stacked-mnist: generated samples whose modes are counted (VEEGAN, PacGAN)

    def settings(self) -> dict:
        return asdict(self)

    def with_seeds(self, seeds) -> "Scale":
        return self if not seeds else replace(self, seeds=tuple(int(s) for s in seeds))

    def lens_schedule(self) -> int:
        """K of the lens: the scale's, else a quarter of the run (the lens is the identity for the last 3/4)."""
        return self.lens_k or max(1, self.tempered_steps // 4)


ALL_METHODS = ("ns", "roth-annealed", "roth-0.1", "noise", "wgan-gp")

FULL = Scale(name="full", image_steps=20_000, toy_steps=100_000, resolution=32, width=64, eval_points=10,
             eval_samples=5000, extractor="auto", seeds=(0, 1, 2),
             architectures=("dcgan", "dcgan-nobn", "dcgan-narrow", "dcgan-wide", "resnet"), methods=ALL_METHODS,
             noise_levels=(0.01, 0.05, 0.1, 0.5, 1.0), critic_g_steps=2000, critic_ratio=50, fixed_g_d_steps=5000,
             fixed_g_epochs=5, epochs=(1, 10, 25), epoch_steps=None, fresh_d_steps=4000, record_every=100,
             probe_batches=10, cross_steps=20_000, cross_samples=10_000, hist_samples=5000, toy_samples=10_000,
             lens_width=64, lens_k=10_000, tempered_steps=20_000, grid_steps=20_000, grid_cells=None,
             stacked_steps=20_000, mode_samples=26_000)

CPU = Scale(name="cpu", image_steps=600, toy_steps=12_000, resolution=16, width=16, eval_points=4,
            eval_samples=500, extractor="auto", seeds=(0, 1, 2), architectures=("dcgan", "dcgan-nobn"),
            methods=("ns", "roth-annealed", "roth-0.1"), noise_levels=(0.1, 0.5), critic_g_steps=40,
            critic_ratio=50, fixed_g_d_steps=1500, fixed_g_epochs=5, epochs=(1, 10, 25), epoch_steps=None,
            fresh_d_steps=4000, record_every=200, probe_batches=10, cross_steps=10_000, cross_samples=2000,
            hist_samples=1000, toy_samples=5000, lens_width=16, lens_k=None, tempered_steps=400, grid_steps=600,
            grid_cells=None, stacked_steps=2000, mode_samples=26_000)

# The cpu scale cut to about 20 minutes for the whole suite: only what differs from it.
QUICK = replace(CPU, name="quick", image_steps=250, toy_steps=3000, noise_levels=(0.2, 1.0), critic_g_steps=20,
                fixed_g_d_steps=250, fixed_g_epochs=2, fresh_d_steps=800, record_every=100, cross_steps=600,
                cross_samples=1000, toy_samples=2000, lens_width=8, tempered_steps=150, grid_steps=200, grid_cells=6,
                stacked_steps=400, mode_samples=10_000)

# A few steps of everything: the test suite's smoke scale (raw-pixel FID, no classifier to train).
TINY = Scale(name="tiny", image_steps=3, toy_steps=4, resolution=8, width=8, eval_points=1, eval_samples=40,
             extractor="raw", seeds=(0, 1), architectures=("dcgan", "resnet"), methods=ALL_METHODS,
             noise_levels=(0.1, 1.0), critic_g_steps=2, critic_ratio=3, fixed_g_d_steps=3, fixed_g_epochs=1,
             epochs=(1, 2), epoch_steps=1, fresh_d_steps=4, record_every=2, probe_batches=3, cross_steps=3,
             cross_samples=40, hist_samples=40, toy_samples=200, lens_width=4, lens_k=None, tempered_steps=2,
             grid_steps=3, grid_cells=2, stacked_steps=3, mode_samples=300)

SCALES = {"tiny": TINY, "quick": QUICK, "cpu": CPU, "full": FULL}
