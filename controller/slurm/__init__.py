"""gpufleet on Slurm: mirror node health into Slurm node states, and launch supervised runs
through sbatch.

- `commands`: the one seam that runs Slurm's commands (`SlurmCommands`, `SubprocessSlurm`).
- `fake`: an in-memory `FakeSlurm` for tests of the pure logic.
- `model`: what is read from Slurm, and the pure parsers of the commands' output.
- `reconcile`: which drains/resumes make Slurm match gpufleet (pure); `sync` applies them.
- `batch`: the sbatch script of one attempt (pure); `launcher` submits, watches and cancels.
"""
