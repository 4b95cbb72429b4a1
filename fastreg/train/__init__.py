"""The trainer: the loop (:mod:`.trainer`), one iteration's updates (:mod:`.steps`), checkpoint state and
random state (:mod:`.state`), what a run writes (:mod:`.outputs`), opening a saved run without training it
(:mod:`.runs`, :func:`~fastreg.train.runs.open_run`), its config (:mod:`.config`), checkpoints
(:mod:`.checkpoint`) and data-parallel runs (:mod:`.distributed`).
"""
