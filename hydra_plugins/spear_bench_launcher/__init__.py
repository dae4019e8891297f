"""spear-bench's hydra plugin: the SLURM launcher of conf/hydra/launcher/slurm.yaml.

Hydra only instantiates launchers that live in the ``hydra_plugins`` namespace package. This
folder is a portion of that namespace found from the repository root (where every spear-bench
command runs: ``python -m bench.run``, make, pytest, and the SLURM jobs, which start in the
submitting directory), so it needs no separate install.
"""
