"""The trainer: one loop for every GAN variant (:mod:`.trainer`), its config (:mod:`.config`),
checkpoints (:mod:`.checkpoint`) and data-parallel runs (:mod:`.distributed`).
"""
