"""``facesearch study init NAME``: a commented starter spec that runs as written (on synthetic faces
unless FACESEARCH_DATA points at the course data)."""
from __future__ import annotations

STARTER = """\
# {name}: a facesearch study, one phase of the experiment plan. Run it with
#   facesearch study run {name}.yaml --workers 2        (or --gpus 0,1,2,3)
name: {name}
description: >
  What this phase asks (for example: which loss, at the baseline's other settings).

# The course layout: train folders of identity sub-folders, a val folder with val_pairs.csv.
# ${{VAR:-default}} reads the environment, so every machine can point at its own copy.
data:
  train: ${{FACESEARCH_DATA:-data/synth}}/train1
  val: ${{FACESEARCH_DATA:-data/synth}}/val

# Any TrainConfig field held constant in this phase (facesearch train --help lists them all).
fixed: {{model: resnet18, resolution: 224, n_per_class: 2, optimizer: adam, scheduler: step}}

# What the sampler searches: float/int ranges (log: true, step: N) and categorical choices;
# "when:" makes a param exist only for some values of another.
space:
  loss: {{type: categorical, choices: [softmax, arcface, cosface, triplet_hard]}}
  margin: {{type: float, low: 0.1, high: 0.5, when: {{loss: [arcface, cosface, triplet_hard]}}}}
  lr: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}

sampler: {{name: tpe, seed: 0}}                      # tpe, random, grid, cmaes, gp
pruner: {{name: median, n_startup_trials: 5, n_warmup_steps: 2}}   # percentile, hyperband, none, ...
constraint: {{param_cap: 11.5M}}                     # models over the cap are pruned before training
budget: {{n_trials: 30, epochs: 10, timeout: 12h}}   # shared by every worker of the study
keep_checkpoints: 3                                # only the best 3 trials keep their checkpoints

# Known-good points tried first (the baseline), so the search starts from something that works.
enqueue:
  - {{loss: softmax, lr: 1.0e-3}}

# A later phase can start from this one's best trial: from: {{study: {name}}}
"""


def starter_spec(name: str) -> str:
    return STARTER.format(name=name)
