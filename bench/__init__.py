from bench.run import slurm as _slurm  # noqa: F401  (registers the ${spear_slurm_gpus:} resolver of the SLURM launcher)
