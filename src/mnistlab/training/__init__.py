"""The training machinery the hand-written models share.

`batching` draws a run's batch order up front; `loop` runs a model's compiled chunks of
steps over it, keeps the records and calls back between chunks; `optimizers` builds the
optimizers and learning-rate schedules; `seeding` derives seeds and sets determinism;
`augment` warps images on the fly. Nothing here imports `runs`, `experiment` or `cli`.
"""
