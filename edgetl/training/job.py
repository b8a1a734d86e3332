"""What one training run works on, passed as one record between its steps (the cache pass,
the epoch loop, the final metrics) instead of nine arguments each."""
from dataclasses import dataclass


@dataclass
class Job:
    model: object            # the EdgeNet being trained
    unit: int                # first trained feature unit (everything below it is cached)
    spec: object             # models.ModelSpec: input size, preprocessing, labels
    splits: object           # data.Splits
    cfg: object              # config.TrainConfig
    files: object            # core.layout.TrainFiles
    world: int               # processes (DistributedDataParallel)
    log: object              # the stage logger
