"""A synthetic Zero-to-JupyterHub estate on GCP, for the demo, the tests and the benchmarks.

`generate(spec, out_dir)` writes what real clusters would give hubmeter (OpenMetrics usage per
cluster, the GCP billing export and its FOCUS form, a hubmeter.yaml) plus the ground truth those
files imply, deterministically for a seed and without holding the samples in memory.
"""

from app.synthetic.generator import generate
from app.synthetic.manifest import Manifest, read_manifest
from app.synthetic.spec import ScenarioSpec

__all__ = ["Manifest", "ScenarioSpec", "generate", "read_manifest"]
