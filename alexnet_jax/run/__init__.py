"""What a run keeps and where: the workdir's files, Orbax checkpoints and the run record,
metrics and learning curves, processes and the device mesh, the compilation cache."""
