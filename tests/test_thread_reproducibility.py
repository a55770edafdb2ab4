"""Activations do not depend on torch's thread count (docs/distributed.md): MKL's strict mode is set on import."""

from __future__ import annotations

import os
import subprocess
import sys

PRODUCT_AT_THREADS = """
import sys
{imports}
import torch
generator = torch.Generator().manual_seed(0)
inputs = torch.randn(37, 9216, generator=generator)          # AlexNet fc6's shape: long sums split between threads
weights = torch.randn(4096, 9216, generator=generator) * 0.01
results = []
for threads in (1, 2, 4):
    torch.set_num_threads(threads)
    results.append(torch.nn.functional.linear(inputs, weights))
print(all(torch.equal(results[0], other) for other in results[1:]))
"""


def products_agree(imports: str, environment: dict) -> bool:
    script = PRODUCT_AT_THREADS.format(imports=imports)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=True)
    return done.stdout.strip() == "True"


def test_importing_the_package_makes_matrix_products_independent_of_the_thread_count():
    environment = {key: value for key, value in os.environ.items() if key != "MKL_CBWR"}
    assert products_agree("import selectivity_eval", environment)


def test_a_reproducibility_setting_of_the_user_wins():
    environment = {**os.environ, "MKL_CBWR": "COMPATIBLE"}
    script = "import selectivity_eval, os; print(os.environ['MKL_CBWR'])"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=True)
    assert done.stdout.strip() == "COMPATIBLE"
